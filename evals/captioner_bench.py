"""Captioner throughput benchmark: frames per second and peak memory of each captioner here.

Every captioner captions the same consecutive frames of one video:

- ``structured``: the embedded describer (classical vision), one call for the whole clip, since
  it tracks objects across frames;
- ``transformers``: a local VLM folder (``vlm_model``) or, without one, a randomly initialised
  model of a named shape (``random_vlm``, see :mod:`sleuth.evals.random_vlm`) built in a
  temporary folder and loaded through the real loading code. Random models generate exactly
  ``max_new_tokens`` tokens per frame (``min_new_tokens`` is set to the same value), so the
  measured cost is that architecture's; their captions are meaningless. Runs on every device
  asked for (default: the CPU, and CUDA when present);
- ``litellm``: the ``vlm`` role's endpoint, only when ``vlm.model`` is configured (the packaged
  LLM is text-only). Its cost is mostly the endpoint's, which this process cannot see.

Each measurement is: build and load the captioner, one warm-up call on the first batch of
frames, then one timed call on all frames (wall clock). ``peak_rss_mb`` is this process's peak
resident memory from just before loading to the end of the timed call (Linux resets the
high-water mark through ``/proc/self/clear_refs``; elsewhere it is the process's lifetime peak),
so it includes the interpreter, the imported libraries and the decoded frames
(``rss_before_mb`` says how much of it was there before loading).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sleuth.config import Settings
from sleuth.errors import SleuthError
from sleuth.tools.captioners.base import Captioner
from sleuth.tools.frames import Frame, FrameReader

KINDS = ("structured", "transformers", "litellm")
RANDOM_NOTE = "random weights: compute cost only, captions meaningless"
Log = Callable[[str], None]


class CaptionerBenchError(SleuthError):
    """A captioner benchmark asked for something that cannot be measured (no frames, an unknown captioner)."""


@dataclass(frozen=True)
class CaptionerBenchConfig:
    """What to benchmark. ``devices`` None: the CPU, and CUDA when present."""

    captioners: tuple[str, ...] = KINDS
    vlm_model: str | None = None
    random_vlm: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 32
    devices: tuple[str, ...] | None = None
    seed: int = 0


# -- memory ----------------------------------------------------------------------------------


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc), so earlier work does not count."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS high-water mark to its current RSS (Linux); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    value = _status_mb("VmRSS")
    return value if value is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    value = _status_mb("VmHWM")
    if value is not None:
        return value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


# -- measuring -------------------------------------------------------------------------------


def read_clip(video: Path, n_frames: int) -> list[Frame]:
    """The first ``n_frames`` consecutive frames of ``video``."""
    if n_frames < 1:
        raise CaptionerBenchError(f"--frames must be at least 1, got {n_frames}", hint="pass --frames 100")
    frames = FrameReader(video, max_frames=n_frames).read()
    if not frames:
        raise CaptionerBenchError(f"no frames could be decoded from {video}", hint="check the file plays")
    return frames


def measure(load: Callable[[], Captioner], frames: Sequence[Frame], *, warmup: int,
            device: str = "cpu") -> dict[str, Any]:
    """Load a captioner, warm it up on ``frames[:warmup]``, then time one call on all ``frames``."""
    release_freed_memory()  # e.g. a random model built just before: its freed weights stay resident otherwise
    scoped = reset_peak_rss()
    before = current_rss_mb()
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    captioner = load()
    captioner.caption(list(frames[:warmup]))
    ready = time.perf_counter()
    captions = captioner.caption(list(frames))
    seconds = time.perf_counter() - ready
    if len(captions) != len(frames):
        raise RuntimeError(f"{captioner.name} returned {len(captions)} captions for {len(frames)} frames")
    result: dict[str, Any] = {
        "name": captioner.name, "frames": len(frames), "warmup_frames": min(warmup, len(frames)),
        "load_and_warmup_s": round(ready - started, 2), "seconds": round(seconds, 3),
        "fps": _significant(len(frames) / seconds), "s_per_frame": _significant(seconds / len(frames)),
        "peak_rss_mb": round(peak_rss_mb()), "rss_before_mb": round(before),
        "peak_rss_scope": "load to end of run" if scoped else "process lifetime",
        "sample_caption": captions[0][:200],
    }
    if cuda:
        import torch

        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return result


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def default_devices() -> tuple[str, ...]:
    try:
        import torch
    except ImportError:
        return ("cpu",)
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def _device_available(device: str) -> bool:
    if not device.startswith("cuda"):
        return True
    import torch

    return torch.cuda.is_available()


def _threads(device: str) -> int | None:
    if device.startswith("cuda"):
        return None
    import torch

    return torch.get_num_threads()


def _skipped(captioner: str, reason: str, **fields: Any) -> dict[str, Any]:
    return {"captioner": captioner, "model": fields.pop("model", "-"), "device": fields.pop("device", "-"),
            "batch": fields.pop("batch", "-"), "skipped": reason, "note": f"skipped: {reason}", **fields}


# -- the captioners --------------------------------------------------------------------------


def bench_structured(frames: Sequence[Frame], settings: Settings, config: CaptionerBenchConfig) -> dict[str, Any]:
    from sleuth.tools.captioners.structured import StructuredDescriber

    result = measure(lambda: StructuredDescriber(settings), frames, warmup=config.batch_size)
    return {"captioner": "structured", "model": "classical vision (object stage)", "device": "cpu",
            "batch": f"clip of {len(frames)}", **result,
            "note": "whole clip per call (objects are tracked across frames)"}


def bench_transformers(frames: Sequence[Frame], settings: Settings, config: CaptionerBenchConfig,
                       folder: str, device: str, random: dict[str, Any] | None) -> dict[str, Any]:
    from sleuth.tools.captioners.vlm_transformers import TransformersCaptioner

    model = f"random:{config.random_vlm}" if random else folder
    batch = config.batch_size
    if not _device_available(device):
        return _skipped("transformers", f"no {device} device here", model=model, device=device, batch=batch)

    def load() -> Captioner:
        captioner = TransformersCaptioner(folder, prompt=settings.tools.captioner.prompt, batch_size=batch,
                                          max_new_tokens=config.max_new_tokens, device=device)
        captioner.load()
        return captioner

    result = measure(load, frames, warmup=batch, device=device)
    result["name"] = f"transformers:{model}"  # not the temporary folder's path
    row = {"captioner": "transformers", "model": model, "device": device, "batch": batch, "threads": _threads(device),
           **result}
    if random:
        tokens = config.max_new_tokens
        row.update(random_weights=True, new_tokens_per_frame=tokens,
                   new_tokens_per_s=round(tokens * len(frames) / result["seconds"], 1), **random,
                   note=f"{RANDOM_NOTE} ({tokens} new tokens per frame)")
    else:
        row["note"] = f"real weights: up to {config.max_new_tokens} new tokens, stops at end of text"
    return row


def bench_litellm(frames: Sequence[Frame], settings: Settings, config: CaptionerBenchConfig) -> dict[str, Any]:
    if not settings.vlm.model:
        return _skipped("litellm", "no vision model in vlm.model (SLEUTH_VLM__MODEL); the packaged LLM is text-only")
    from sleuth.llm.gateway import Gateway
    from sleuth.tools.captioners.vlm_litellm import LiteLLMCaptioner

    concurrency = 4

    def load() -> Captioner:
        return LiteLLMCaptioner(Gateway(settings), prompt=settings.tools.captioner.prompt,
                                max_tokens=config.max_new_tokens, concurrency=concurrency)

    result = measure(load, frames, warmup=1)
    endpoint = settings.vlm.api_base or "provider default"
    return {"captioner": "litellm", "model": settings.vlm.model, "device": f"endpoint ({endpoint})",
            "batch": f"{concurrency} concurrent", **result,
            "note": "peak MB is this client process; the endpoint's cost is not seen"}


def _build_random(folder: Path, config: CaptionerBenchConfig, log: Log) -> dict[str, Any]:
    from sleuth.evals.random_vlm import build_random_llava, parameter_counts, shape_named

    shape = shape_named(config.random_vlm or "")
    counts = parameter_counts(shape)
    log(f"building a random '{config.random_vlm}' VLM ({counts['total'] / 1e6:.1f}M parameters) in {folder}")
    started = time.perf_counter()
    build_random_llava(folder, shape, seed=config.seed, min_new_tokens=config.max_new_tokens)
    log(f"  built in {time.perf_counter() - started:.1f} s")
    return {"shape": shape.description, "parameters": counts, "image_tokens": shape.image_tokens}


def _transformers_rows(frames: Sequence[Frame], settings: Settings, config: CaptionerBenchConfig,
                       log: Log) -> list[dict[str, Any]]:
    configured = settings.tools.captioner.device
    devices = config.devices or ((configured,) if configured else default_devices())
    model = config.vlm_model or settings.tools.captioner.model
    if not model and not config.random_vlm:
        return [_skipped("transformers", "no model: pass --vlm-model PATH (a local model folder) or "
                         f"--random-vlm {'|'.join(_shape_names())}")]
    rows = []
    holder = contextlib.nullcontext(model) if model else tempfile.TemporaryDirectory(prefix="sleuth-random-vlm-")
    with holder as folder:
        random = None if model else _build_random(Path(folder), config, log)
        for device in devices:
            log(f"transformers on {device}: {len(frames)} frames, batch {config.batch_size}")
            run = functools.partial(bench_transformers, frames, settings, config, folder, device, random)
            rows.append(_guarded("transformers", run, model=f"random:{config.random_vlm}" if random else model,
                                 device=device, batch=config.batch_size))
    return rows


def _shape_names() -> list[str]:
    from sleuth.evals.random_vlm import SHAPES

    return list(SHAPES)


def _guarded(captioner: str, run: Callable[[], dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The captioner's row, or an error row when it fails in a way a user can fix (a bad model folder...)."""
    try:
        return run()
    except SleuthError as exc:
        return {"captioner": captioner, "model": "-", "device": "-", "batch": "-", **fields,
                "error": exc.one_line(), "note": f"error: {exc.one_line()}"}


def run_benchmarks(frames: Sequence[Frame], settings: Settings, config: CaptionerBenchConfig, *,
                   source: str | None = None, log: Log = lambda _: None) -> dict[str, Any]:
    """Benchmark the chosen captioners on ``frames`` (read from ``source``).

    Returns a JSON-ready report: the frames, the configuration, and one row per captioner and
    device, each with a ``note``; a captioner that cannot run has ``skipped`` or ``error`` instead
    of measurements.
    """
    if not frames:
        raise CaptionerBenchError("no frames to caption", hint="pass a video with --video and --frames 1 or more")
    unknown = [kind for kind in config.captioners if kind not in KINDS]
    if unknown:
        raise CaptionerBenchError(f"unknown captioner '{unknown[0]}'", hint=f"choose from {', '.join(KINDS)}")
    if config.random_vlm:
        from sleuth.evals.random_vlm import shape_named

        shape_named(config.random_vlm)  # an unknown shape fails before anything runs
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        if kind not in config.captioners:
            continue
        if kind == "structured":
            log(f"structured: {len(frames)} frames")
            rows.append(_guarded(kind, lambda: bench_structured(frames, settings, config)))
        elif kind == "transformers":
            rows.extend(_transformers_rows(frames, settings, config, log))
        else:
            rows.append(_guarded(kind, lambda: bench_litellm(frames, settings, config)))
    height, width = frames[0].image.shape[:2]
    notes = [RANDOM_NOTE] if any(row.get("random_weights") for row in rows) else []
    return {"source": source, "frames": len(frames), "first_frame": frames[0].index, "frame_size": [width, height],
            "cpu_count": os.cpu_count(), "config": asdict(config), "notes": notes, "results": rows}


# -- output ----------------------------------------------------------------------------------


def print_table(report: dict[str, Any], console: Console) -> None:
    table = Table(box=None, header_style="bold")
    for column in ("captioner", "model", "device", "batch", "fps", "s/frame", "peak MB", "note"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("model", "device", "note"))
    for row in report["results"]:
        measured = "fps" in row
        peak = f"{row['peak_rss_mb']}" + (f" (GPU {row['peak_gpu_mb']})" if "peak_gpu_mb" in row else "") \
            if measured else "-"
        table.add_row(row["captioner"], str(row["model"]), str(row["device"]), str(row["batch"]),
                      f"{row['fps']:.1f}" if measured else "-", f"{row['s_per_frame']:.4g}" if measured else "-",
                      peak, row["note"])
    console.print(table)
    for note in report["notes"]:
        console.print(f"[bold]note:[/] {note}")
