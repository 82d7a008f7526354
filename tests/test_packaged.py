"""Joining packaged GGUF parts: pinned checksums, a clear error naming the bad or missing part."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from sleuth.errors import ChecksumError, ModelFileError
from sleuth.llm import packaged
from sleuth.llm.packaged import PackagedModel, Part


def install_fake_parts(site: Path, prefix: str, payloads: list[bytes], version: str = "1.0") -> None:
    """Lay out distributions ``{prefix}{i}`` the way the real part wheels install."""
    for index, payload in enumerate(payloads, start=1):
        module = f"{prefix}{index}".replace("-", "_")
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (site / module / "data" / f"part{index:02d}.bin").write_bytes(payload)
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}{index}\nVersion: {version}\n")


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    payloads = [b"GGUF" + b"a" * 1000, b"b" * 700, b"c" * 33]
    prefix = f"sleuth-fake-part-{tmp_path.name[-6:].replace('-', '')}x"
    site = tmp_path / "site"
    install_fake_parts(site, prefix, payloads)
    monkeypatch.syspath_prepend(str(site))
    for name in list(sys.modules):
        if name.startswith(prefix.replace("-", "_")):
            del sys.modules[name]
    return PackagedModel(
        name="fake-model", description="fake", dist_prefix=prefix, version="1.0",
        parts=tuple(Part(f"part{i:02d}.bin", len(p), hashlib.sha256(p).hexdigest())
                    for i, p in enumerate(payloads, start=1)),
        sha256=hashlib.sha256(b"".join(payloads)).hexdigest(),
        install_hint="reinstall the fake parts")


def test_parts_join_into_a_verified_file(fake_model: PackagedModel, tmp_path: Path) -> None:
    path = packaged.ensure_joined(fake_model, tmp_path / "cache")
    assert path.read_bytes().startswith(b"GGUF")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_model.sha256
    assert packaged.cached_and_verified(fake_model, tmp_path / "cache") == path
    assert packaged.ensure_joined(fake_model, tmp_path / "cache") == path  # reused


def test_a_tampered_joined_file_is_rebuilt(fake_model: PackagedModel, tmp_path: Path) -> None:
    path = packaged.ensure_joined(fake_model, tmp_path / "cache")
    path.write_bytes(b"GGUF truncated")
    assert packaged.cached_and_verified(fake_model, tmp_path / "cache") is None
    rebuilt = packaged.ensure_joined(fake_model, tmp_path / "cache")
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == fake_model.sha256


def test_a_corrupt_part_is_named_and_leaves_no_file(fake_model: PackagedModel, tmp_path: Path) -> None:
    corrupt = packaged.locate_part(fake_model, 2)
    corrupt.write_bytes(b"B" * 700)  # same size, different bytes
    with pytest.raises(ChecksumError) as caught:
        packaged.ensure_joined(fake_model, tmp_path / "cache")
    message = str(caught.value)
    assert "part 2" in message and f"{fake_model.dist_prefix}2" in message
    assert "\n" not in message
    assert not list((tmp_path / "cache" / "models").glob("*.gguf*"))


def test_a_missing_part_is_named(fake_model: PackagedModel, tmp_path: Path) -> None:
    packaged.locate_part(fake_model, 3).unlink()
    with pytest.raises(ModelFileError, match="part 3"):
        packaged.ensure_joined(fake_model, tmp_path / "cache")
    assert packaged.parts_status(fake_model) == [
        f"fake-model: part 3 ({fake_model.dist_prefix}3) has no data/part03.bin"]


def test_an_uninstalled_or_wrong_version_part_is_named(fake_model: PackagedModel) -> None:
    missing = PackagedModel(**{**fake_model.__dict__, "parts": fake_model.parts + (Part("part04.bin", 1, "0" * 64),)})
    with pytest.raises(ModelFileError, match="part 4 .* is not installed"):
        packaged.locate_part(missing, 4)
    wrong = PackagedModel(**{**fake_model.__dict__, "version": "2.0"})
    with pytest.raises(ModelFileError, match=r"part 1 is .*==1.0, expected ==2.0"):
        packaged.locate_part(wrong, 1)


def test_whole_file_checksum_is_checked(fake_model: PackagedModel, tmp_path: Path) -> None:
    pinned_wrong = PackagedModel(**{**fake_model.__dict__, "sha256": "f" * 64})
    with pytest.raises(ChecksumError, match="joined file"):
        packaged.ensure_joined(pinned_wrong, tmp_path / "cache")


def test_the_packaged_default_model_parts_are_installed() -> None:
    assert packaged.parts_status(packaged.QWEN_05B) == []


def test_explicit_gguf_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        packaged.resolve_gguf(None, tmp_path / "nope.gguf", tmp_path)
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04zip")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        packaged.resolve_gguf(None, not_gguf, tmp_path)
    with pytest.raises(ModelFileError, match="not a packaged model"):
        packaged.resolve_gguf("gpt-17", None, tmp_path)


@pytest.fixture
def big_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """Over the size that content_sample hashes whole, so the sampled check is the one tested."""
    import random

    rng = random.Random(7)
    payloads = [b"GGUF" + rng.randbytes(20 << 20), rng.randbytes(20 << 20)]
    prefix = f"sleuth-big-part-{tmp_path.name[-6:].replace('-', '')}x"
    install_fake_parts(tmp_path / "site", prefix, payloads)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return PackagedModel(
        name="big-model", description="big", dist_prefix=prefix, version="1.0",
        parts=tuple(Part(f"part{i:02d}.bin", len(p), hashlib.sha256(p).hexdigest())
                    for i, p in enumerate(payloads, start=1)),
        sha256=hashlib.sha256(b"".join(payloads)).hexdigest(), install_hint="reinstall the fake parts")


def _tamper(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes in place and put the size and mtime back, as a careless copy or a bad disk would."""
    import os

    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


@pytest.mark.parametrize("where", ["middle", "header"])
def test_content_changed_in_place_is_caught_and_joined_again(big_model: PackagedModel, tmp_path: Path,
                                                             where: str) -> None:
    """Issue 18: the same size with bytes randomised in the middle (mtime restored) answered
    'GGGG'; a zeroed header failed on every run and was never joined again."""
    import random

    cache = tmp_path / "cache"
    path = packaged.ensure_joined(big_model, cache)
    if where == "middle":
        _tamper(path, 15 << 20, random.Random(1).randbytes(5 << 20))
    else:
        _tamper(path, 0, bytes(4096))
    assert packaged.cached_and_verified(big_model, cache) is None
    assert packaged.ensure_joined(big_model, cache) == path
    assert packaged.full_sha256(path) == big_model.sha256
    assert packaged.cached_and_verified(big_model, cache) == path


def test_the_full_check_catches_what_sampling_skips(big_model: PackagedModel, tmp_path: Path) -> None:
    """A byte between the sampled blocks passes the cheap check; ``full`` (what doctor runs) does not."""
    cache = tmp_path / "cache"
    path = packaged.ensure_joined(big_model, cache)
    _tamper(path, (1 << 20) + (1 << 16) + 10, b"\x00")  # just after the first sampled block
    assert packaged.cached_and_verified(big_model, cache) == path
    assert packaged.cached_and_verified(big_model, cache, full=True) is None
    packaged.ensure_joined(big_model, cache, full=True)
    assert packaged.full_sha256(path) == big_model.sha256


def test_doctor_hashes_the_whole_file_and_joins_a_corrupt_one_again(big_model: PackagedModel,
                                                                   tmp_path: Path) -> None:
    from sleuth.doctor import _check_joined

    cache = tmp_path / "cache"
    assert "not joined yet" in _check_joined(big_model, cache, "llm").detail
    path = packaged.ensure_joined(big_model, cache)
    assert "whole-file SHA-256 verified" in _check_joined(big_model, cache, "llm").detail
    _tamper(path, 30 << 20, b"\xff" * 8)
    check = _check_joined(big_model, cache, "llm")
    assert check.status == "warn" and "joined again" in check.detail
    assert packaged.full_sha256(path) == big_model.sha256


def test_a_stamp_from_an_older_version_is_renewed_without_a_new_join(big_model: PackagedModel,
                                                                     tmp_path: Path) -> None:
    import json

    cache = tmp_path / "cache"
    path = packaged.ensure_joined(big_model, cache)
    stamp = path.with_suffix(".gguf.verified.json")
    stamp.write_text(json.dumps({"sha256": big_model.sha256, "size": big_model.size, "mtime_ns": 1}))
    inode = path.stat().st_ino
    assert packaged.cached_and_verified(big_model, cache) is None
    assert packaged.ensure_joined(big_model, cache) == path
    assert path.stat().st_ino == inode  # the same file, not a new join
    assert "sample" in json.loads(stamp.read_text())
