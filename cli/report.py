"""``sleuth report``: redraw the HTML investigation report from the JSON that ``detect`` wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sleuth.cli.runner import err, request


def report(
    result: Annotated[Path, typer.Argument(help="A detect result: the JSON file that `sleuth detect` wrote.")],
    html: Annotated[Path, typer.Option("--html", help="Write the self-contained HTML report here.")],
) -> None:
    """Write a self-contained HTML investigation report (plot, events, key frames) from a detect result."""
    from sleuth.reports import load_report, write_html

    with request("report"):
        detected = load_report(result)
        path = write_html(detected, html)
        err.print(f"{len(detected.events)} event(s), {len(detected.frames)} frames")
        typer.echo(str(path))
