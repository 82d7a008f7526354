"""``sleuth eval search``: Recall@K and mAP of the search graph on annotated clips (sleuth.evals.search_bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sleuth.cli.pipeline import with_overrides
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def eval_search(
    data: Annotated[Path, typer.Option(
        "--data", help="Shared data folder holding videos/ (vtest.avi, ucf_Robbery102_frames.mp4, "
        "xd_GoldenEye_frames.mp4), e.g. ../shared/data.")],
    output: Annotated[Path, typer.Option(help="Output folder for search_bench.json and .md.")] = Path("results/search"),
    keep: Annotated[bool, typer.Option(
        "--keep", help="Reuse the gallery bench-search when it already holds the clips (no re-indexing).")] = False,
    query: Annotated[list[str] | None, typer.Option(
        "--query", help="Only this annotated query id (repeatable).")] = None,
    annotations: Annotated[Path | None, typer.Option(
        help="Annotation file (default: the packaged evals/search_annotations.json).")] = None,
    model: Annotated[str | None, typer.Option(
        help="LLM for cloze generation, completion and comparison (default: the configured llm.model).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a search setting, e.g. --set top_k=20 --set top_n=0 "
        "(see sleuth.graphs.search.SearchConfig).")] = None,
) -> None:
    """Recall@1/5/10 and mAP, retrieval alone and re-ranked, with cost per query."""
    from sleuth.evals.search_bench import ANNOTATIONS, index_time, run_search_benchmark, summary_rows
    from sleuth.graphs.search import SearchConfig

    config = with_overrides(SearchConfig(), set_)
    with request("eval search") as settings:
        result = run_search_benchmark(data, output, settings=settings, config=config, keep=keep,
                                      annotations_path=annotations or ANNOTATIONS, queries=query, llm_model=model,
                                      progress=err.print)

    table = Table(title=f"search · {result.gallery} · {result.reranked.queries_with_positives}/"
                  f"{result.reranked.queries} queries with positives · {result.retriever}", box=None,
                  header_style="bold", title_justify="left")
    for column in ("metric (%)", "retrieval", "re-ranked"):
        table.add_column(column, justify="left" if column.startswith("metric") else "right")
    for row in summary_rows(result):
        table.add_row(*row)
    out.print(table)
    cost = result.cost
    err.print(f"{cost['llm_calls_per_query']} LLM calls and {cost['seconds_per_query']} s per query, index "
              f"{index_time(cost)}, peak {cost['peak_memory_mb']} MB; wrote {result.outputs['result']} and "
              f"{result.outputs['table']}")
