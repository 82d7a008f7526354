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
