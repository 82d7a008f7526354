"""``sleuth eval captions``: accuracy and cost on a caption dataset (see sleuth.evals.caption_bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sleuth.cli.pipeline import with_overrides
from sleuth.cli.runner import err, fail, request

out = Console(highlight=False, soft_wrap=True)
SMOOTHINGS = ("ema_vote", "anomalyruler", "none")


def eval_captions(
    data: Annotated[Path, typer.Option(
        "--data", help="Caption dataset folder (test_frame_description/, test_frame/, test.csv, rules.txt), "
        "e.g. ../shared/data/anomalyruler/ped2.")],
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Rules file (rules.txt layout): deduction only with these rules.")] = None,
    induce: Annotated[bool, typer.Option(
        "--induce", help="Induce the rules from unlabeled test captions, then deduce (default without --rules).")]
    = False,
    keyword: Annotated[bool, typer.Option(
        "--keyword", help="The keyword-only reference AnomalyRuler-base (no LLM), with --rules or the dataset's "
        "rules.txt.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Output folder; default results/captions/<dataset>-<mode>.")] = None,
    videos: Annotated[str | None, typer.Option(help="Only these videos, e.g. 01,02.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Only the first N frames of each video.", min=1)] = None,
    model: Annotated[str | None, typer.Option(
        help="LLM for induction and deduction (a packaged name such as qwen2.5-coder-1.5b, or a LiteLLM "
        "model string); default: the configured llm.model.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a detect_captions setting, e.g. --set llm_weight=0 --set vote_window=9 "
        "(see sleuth.graphs.detect_captions.DetectConfig).")] = None,
    smoothing: Annotated[str | None, typer.Option(
        help="Temporal smoothing: ema_vote, anomalyruler or none (default: anomalyruler, chosen by the "
        "caption validation protocol, python -m sleuth.evals.caption_select).")] = None,
) -> None:
    """Frame AUC/AP and cost (LLM calls, tokens, seconds, memory per frame) on a caption dataset."""
    from sleuth.evals.caption_bench import RichReporter, run_caption_benchmark, summary_rows
    from sleuth.evals.datasets import parse_videos
    from sleuth.graphs.detect_captions.configuration import DetectConfig

    if induce and rules is not None:
        raise fail("--induce and --rules exclude each other: induce the rules, or give them")
    if keyword and induce:
        raise fail("--keyword uses rules from a file (--rules or the dataset's rules.txt), not --induce")
    if smoothing is not None and smoothing not in SMOOTHINGS:
        raise fail(f"--smoothing must be one of {', '.join(SMOOTHINGS)}, not {smoothing!r}")
    mode = "keyword" if keyword else "rules" if rules is not None else "induced"
    base = DetectConfig(smoothing=smoothing or DetectConfig().smoothing)
    config = with_overrides(base, set_)
    output = output or Path("results/captions") / f"{data.resolve().name}-{mode}"

    with request("eval captions") as settings:
        reporter = RichReporter(err)
        result = run_caption_benchmark(data, rules_file=rules, mode=mode, output=output, config=config,
                                       videos=parse_videos(videos), max_frames=max_frames, progress=reporter,
                                       settings=settings, llm_model=model)

    table = Table(title=f"{result.dataset} · {mode} · {result.metrics.frames} frames of {len(result.videos)} "
                  f"videos{' · ' + result.model if result.model else ''}", show_header=False, box=None,
                  pad_edge=False, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary_rows(result):
        table.add_row(name, value)
    out.print(table)
    err.print(f"wrote {result.outputs['result']}, {result.outputs['scores']} and {len(result.outputs['plots'])} "
              f"plot(s) in {output / 'plots'}")
