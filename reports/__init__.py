"""Investigation reports for a :class:`~sleuth.graphs.detect.state.DetectReport`.

One self-contained HTML page (plot and thumbnails inline, no network) and its JSON, which is
enough to redraw the page later (``sleuth report result.json --html report.html``).
"""

from sleuth.reports.html import render_html, write_html
from sleuth.reports.plot import score_plot_png
from sleuth.reports.store import load_report, write_json, write_report
from sleuth.reports.thumbnails import thumbnail

__all__ = ["load_report", "render_html", "score_plot_png", "thumbnail", "write_html", "write_json", "write_report"]
