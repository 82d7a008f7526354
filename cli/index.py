"""``sleuth index`` (build a searchable gallery from footage) and ``sleuth galleries`` (list, delete)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sleuth.cli.proposer import progress_bar
from sleuth.cli.runner import err, fail, request

out = Console(highlight=False, soft_wrap=True)


def index(
    source: Annotated[list[Path], typer.Argument(
        help="Footage: video files, frame folders, or folders of such clips.", show_default=False)],
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="Gallery name (created, or added to).")],
    every: Annotated[float | None, typer.Option(help="Seconds between indexed frames (default 1).")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Drop the gallery first (needed after changing the retriever or the embedder).")] = False,
    min_height: Annotated[int | None, typer.Option(
        help="Smallest object crop indexed, in pixels of the footage (default 24).")] = None,
    max_crops: Annotated[int | None, typer.Option(help="Largest objects indexed per frame (default 8).")] = None,
    no_frames: Annotated[bool, typer.Option("--no-frames", help="Index object crops only, not whole frames.")] = False,
) -> None:
    """Index footage for `sleuth search`: person and object crops and whole frames, captioned and embedded.

    Indexing into an existing gallery adds the new videos; a video indexed again replaces its items.
    """
    from sleuth.graphs.search.index import IndexConfig, index_videos

    options = {"every_s": every, "min_height": min_height, "max_crops": max_crops,
               "frames": False if no_frames else None}
    try:
        config = IndexConfig(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = {"every_s": "every", "min_height": "min-height", "max_crops": "max-crops"}.get(str(first["loc"][0]), "")
        raise fail(escape(f"--{flag} {options.get(str(first['loc'][0]))}: {first['msg']}")) from None
    with request("index") as settings:
        from sleuth.graphs.runtime import Runtime

        runtime = Runtime.from_settings(settings)
        try:
            with progress_bar() as update:
                result = index_videos(source, gallery, runtime=runtime, config=config, replace=replace,
                                      progress=update)
        finally:
            runtime.close()
        counts = ", ".join(f"{n} {kind}" for kind, n in result.items.items() if n) or "no items"
        out.print(escape(f"gallery '{gallery}': {sum(result.items.values())} items ({counts}) from "
                         f"{result.frames_indexed} of {result.frames_read} frames in {len(result.videos)} clip(s)"))
        err.print(escape(f"retriever {result.retriever}; vectors {', '.join(result.vectors)}; "
                         f"{result.seconds:.1f} s"))
        err.print(escape(f'search it with: sleuth search "a person running" --gallery {gallery}'))


def galleries(
    delete: Annotated[str | None, typer.Option("--delete", help="Delete this gallery and its items.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the galleries as JSON.")] = False,
) -> None:
    """List the galleries built by `sleuth index` (items, videos, models), or delete one."""
    from sleuth.memory.gallery import GalleryStore

    with request("galleries") as settings, GalleryStore(settings) as store:
        if delete is not None:
            info = store.info(delete)
            store.delete(delete)
            err.print(escape(f"deleted gallery '{delete}' ({info.items} items)"))
            return
        infos = store.galleries()
    if as_json:
        out.print_json(json.dumps([info.model_dump() for info in infos]))
        return
    if not infos:
        err.print("no galleries yet: build one with sleuth index VIDEO --gallery NAME")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("gallery", "items", "videos", "vectors", "created"):
        table.add_column(column, overflow="fold")
    for info in infos:
        vectors = ", ".join(f"{name}: {info.models.get(name, '?')}" for name in sorted(info.vectors))
        table.add_row(escape(info.name), str(info.items), str(len(info.videos)), escape(vectors),
                      info.created[:16].replace("T", " "))
    out.print(table)
