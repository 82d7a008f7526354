"""Benchmark of the embedded LLMs on this machine: load, latency, throughput, memory.

Each model runs in its own subprocess so that load time and peak memory are its own.
Measured through the gateway, as Sleuth's agents use the model:

- ``join_s``: joining and verifying the packaged parts (first use only; 0 when cached)
- ``load_s``: starting the llama.cpp server until it answers /health
- ``ttft_s``: time to first streamed token for a short question
- ``gen_tok_s``: generated tokens per second (completion tokens / (latency - TTFT))
- ``prompt_s_cold`` / ``prompt_s_cached``: time to evaluate an ~840-token prompt (and emit one
  token) from scratch, and again with the same long prefix (llama.cpp prefix cache) and a new
  question at the end; ``prompt_tok_s_*`` are the prompt tokens divided by those times
- ``peak_rss_mb``: peak resident memory of the process (server included: it runs in-process)

Run: ``sleuth eval llm`` (both packaged models) or ``python -m sleuth.evals.llm_bench --one NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sleuth.config import Settings, load_settings

_RULES = [
    "Walking alone or in a group on the walkway is normal.",
    "Standing, talking or waiting near the benches is normal.",
    "Carrying a bag, a backpack or an umbrella is normal.",
    "Riding a bicycle, a skateboard or a scooter on the walkway is an anomaly.",
    "A car, a truck or a cart on the walkway is an anomaly.",
    "Running, fighting, falling or throwing objects is an anomaly.",
    "Climbing fences or walking on the grass away from the paths is an anomaly.",
]


def long_prompt(nonce: str) -> str:
    """About 840 tokens (with the chat template) of rules, like a deduction prompt."""
    lines = [f"Scene {nonce}. You judge captions of a surveillance camera against these rules."]
    for round_ in range(6):
        lines += [f"Rule {round_ * len(_RULES) + i + 1}: {rule}" for i, rule in enumerate(_RULES)]
    return "\n".join(lines)


def _bench_one(model: str, repeats: int, settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    from sleuth.llm import packaged, server
    from sleuth.llm.gateway import Gateway

    role = settings.llm.model_copy(update={"model": model} if packaged.is_packaged(model)
                                   else {"gguf": Path(model)})
    settings = settings.model_copy(update={"llm": role})
    result: dict[str, Any] = {"model": model, "threads": os.cpu_count()}
    started = time.perf_counter()
    if packaged.is_packaged(model):
        cached = packaged.cached_and_verified(packaged.CATALOGUE[model], settings.cache_dir)
        packaged.ensure_joined(packaged.CATALOGUE[model], settings.cache_dir)
        result["join_s"] = 0.0 if cached else round(time.perf_counter() - started, 2)
    served = server.ensure_started(role, settings.cache_dir)
    result["load_s"] = round(served.load_seconds, 2)
    log(f"{model}: loaded in {served.load_seconds:.1f} s")
    gateway = Gateway(settings)

    ttfts, gen_rates = [], []
    for index in range(repeats):
        for _ in gateway.stream([{"role": "user", "content": f"({index}) In two sentences, "
                                  "describe a busy pedestrian walkway."}], max_tokens=128):
            pass
        record = gateway.usage.records[-1]
        ttfts.append(record.ttft_s or record.latency_s)
        if record.completion_tokens > 1 and record.ttft_s is not None:
            gen_rates.append((record.completion_tokens - 1) / (record.latency_s - record.ttft_s))
    result["ttft_s"] = round(statistics.median(ttfts), 3)
    result["gen_tok_s"] = round(statistics.median(gen_rates), 1)
    log(f"{model}: TTFT {result['ttft_s']} s, {result['gen_tok_s']} tokens/s generated")

    cold, cached, latency, prompt_tokens = [], [], {"cold": [], "cached": []}, 0
    for index in range(repeats):
        prefix = long_prompt(uuid.uuid4().hex[:8])
        for phase, question in (("cold", "Caption: a man walks his dog."),
                                ("cached", f"Caption: a cyclist passes ({index}).")):
            gateway.chat([{"role": "system", "content": prefix},
                          {"role": "user", "content": question + " Normal or anomaly?"}],
                         max_tokens=1)
            record = gateway.usage.records[-1]
            prompt_tokens = record.prompt_tokens
            (cold if phase == "cold" else cached).append(record.prompt_tokens / record.latency_s)
            latency[phase].append(record.latency_s)
    result["prompt_tokens"] = prompt_tokens
    result["prompt_tok_s_cold"] = round(statistics.median(cold), 1)
    result["prompt_tok_s_cached"] = round(statistics.median(cached), 1)
    result["prompt_s_cold"] = round(statistics.median(latency["cold"]), 3)
    result["prompt_s_cached"] = round(statistics.median(latency["cached"]), 3)
    log(f"{model}: {prompt_tokens}-token prompt at {result['prompt_tok_s_cold']} tokens/s cold, "
        f"{result['prompt_tok_s_cached']} tokens/s with the cached prefix")
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["calls"] = gateway.usage.totals()["calls"]
    return result


def run_benchmarks(models: list[str], *, repeats: int, settings: Settings,
                   log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Benchmark each model in a fresh subprocess; a model that fails gets an ``error`` entry."""
    results = []
    for model in models:
        log(f"benchmarking {model} ({repeats} repeats)...")
        process = subprocess.run(
            [sys.executable, "-m", "sleuth.evals.llm_bench", "--one", model, "--repeats", str(repeats)],
            capture_output=True, text=True, env={**os.environ, "SLEUTH_CACHE_DIR": str(settings.cache_dir)})
        for line in process.stderr.splitlines():
            log(f"  {line}")
        if process.returncode != 0:
            results.append({"model": model, "error": (process.stderr.strip().splitlines() or ["failed"])[-1]})
            continue
        results.append(json.loads(process.stdout))
    return results


COLUMNS = [("load_s", "load s"), ("ttft_s", "TTFT s"), ("gen_tok_s", "gen tok/s"),
           ("prompt_tokens", "prompt tok"), ("prompt_s_cold", "prompt s cold"),
           ("prompt_s_cached", "prompt s cached"), ("prompt_tok_s_cold", "prompt tok/s cold"),
           ("peak_rss_mb", "peak RSS MB")]


def print_table(results: list[dict[str, Any]], console: Console) -> None:
    table = Table()
    table.add_column("model", no_wrap=True)
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for result in results:
        if "error" in result:
            table.add_row(result["model"], f"[red]{result['error']}[/]", *([""] * (len(COLUMNS) - 1)))
        else:
            table.add_row(result["model"], *(str(result[key]) for key, _ in COLUMNS))
    console.print(table)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", required=True, help="packaged model name or GGUF path")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sleuth.errors import SleuthError

    try:
        result = _bench_one(args.one, args.repeats, load_settings(),
                            lambda line: print(line, file=sys.stderr, flush=True))
    except SleuthError as exc:
        print(exc.one_line(), file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
