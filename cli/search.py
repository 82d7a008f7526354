"""``sleuth search``: find people and events in an indexed gallery by a text description (AnomalyLMM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sleuth.cli.pipeline import clock
from sleuth.cli.proposer import progress_bar
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def search(
    query: Annotated[str, typer.Argument(help='What to find, e.g. "a man in a red jacket running to the left".')],
    gallery: Annotated[str, typer.Option(help="The gallery to search (built with `sleuth index`).")],
    top_k: Annotated[int, typer.Option(min=1, help="Results to return (candidates from the retriever).")] = 10,
    top_n: Annotated[int, typer.Option(min=0, help="Best candidates re-ranked by cloze completion (0: off).")] = 3,
    kind: Annotated[list[str] | None, typer.Option(
        help="Item kinds to search: person, object, frame (repeatable; default all).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML page with each result's crop here.")] = None,
) -> None:
    """Search a gallery: retrieve by similarity, then re-rank the best candidates by cloze completion."""
    from sleuth.errors import SleuthError
    from sleuth.graphs.runtime import Runtime
    from sleuth.graphs.search import SearchConfig
    from sleuth.graphs.search import search as run_search

    with request("search") as settings:
        kinds: list[Literal["person", "object", "frame"]] | None = None
        if kind:
            unknown = sorted(set(kind) - {"person", "object", "frame"})
            if unknown:
                raise SleuthError(f"unknown --kind {', '.join(unknown)}", hint="use person, object or frame")
            kinds = kind  # type: ignore[assignment]
        config = SearchConfig(top_k=top_k, top_n=top_n, kinds=kinds)
        runtime = Runtime.from_settings(settings)
        try:
            with progress_bar() as update:
                result = run_search(query, gallery, runtime=runtime, config=config, progress=update)  # type: ignore[arg-type]
        finally:
            runtime.close()
        if result.cloze is not None:
            out.print(f"cloze ({result.cloze.source}): {escape(result.cloze.text)}")
        table = Table(box=None, header_style="bold")
        for column in ("#", "S", "S1", "n", "video", "frame", "time", "kind", "completion", "description"):
            table.add_column(column, overflow="fold")
        for position, entry in enumerate(result.results, 1):
            completion = ""
            if entry.completion is not None:
                completion = " ".join(f"{name}={word}{'✓' if entry.completion.matches.get(name) else '✗'}"
                                      for name, word in entry.completion.fills.items())
            table.add_row(str(position), f"{entry.score:.3f}", f"{entry.s1:.3f}",
                          "" if entry.rank is None else str(entry.rank), escape(Path(entry.item.video).name),
                          str(entry.item.frame), clock(entry.item.time_s), entry.item.kind, escape(completion),
                          escape(entry.item.caption[:90]))
        out.print(table if result.results else "no results")
        err.print(f"{len(result.results)} results from {escape(result.retriever)}; {result.llm_calls} LLM calls; "
                  f"{result.seconds:.1f} s")
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(result.model_dump_json(indent=1))
            err.print(f"wrote {json_out}")
        if html is not None:
            from sleuth.reports.search import write_search_html

            err.print(f"wrote {write_search_html(result, html)}")
