"""Investigation reports for a :class:`~sleuth.graphs.detect.state.DetectReport`.

One self-contained HTML page (plot and thumbnails inline, no network) and its JSON, which is
enough to redraw the page later (``sleuth report result.json --html report.html``).

The names below load on first use, so a light submodule (``sleuth.reports.summary``) does not
pull in the graphs, torch and LiteLLM: ``sleuth rules list`` starts in about a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sleuth.reports.html import render_html, write_html
    from sleuth.reports.plot import score_plot_png
    from sleuth.reports.store import load_report, write_json, write_report
    from sleuth.reports.thumbnails import thumbnail

_HOMES = {
    "render_html": "html", "write_html": "html", "score_plot_png": "plot", "load_report": "store",
    "write_json": "store", "write_report": "store", "thumbnail": "thumbnails",
}
__all__ = ["load_report", "render_html", "score_plot_png", "thumbnail", "write_html", "write_json", "write_report"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sleuth.reports' has no attribute {name!r}")
    return getattr(import_module(f"sleuth.reports.{_HOMES[name]}"), name)
