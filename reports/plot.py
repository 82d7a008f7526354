"""The report's score-over-time plot: final and proposer scores, threshold, events and gated frames.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, safe in threads and
servers). No user or model text is drawn, so nothing in a video name can trip mathtext.
"""

from __future__ import annotations

import io

import numpy as np
from sleuth.records import DetectReport

_MAX_EVENT_LABELS = 60  # beyond this the labels overlap into a smear; the events table has them all


def score_plot_png(report: DetectReport, *, width_in: float = 11.0, height_in: float = 3.4, dpi: int = 110) -> bytes:
    """PNG bytes of the report's scores over time (seconds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    frames = report.frames
    times = np.array([frame.time_s for frame in frames], dtype=float)
    scores = np.clip(np.array([frame.score for frame in frames], dtype=float), 0.0, 1.0)
    proposer = np.clip(np.array([frame.proposer for frame in frames], dtype=float), 0.0, 1.0)
    gated = times[np.array([frame.gated for frame in frames], dtype=bool)] if frames else times

    figure = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    low, high = _time_range(report, times)
    minimum_width = (high - low) / 400  # a one-frame event still shows as a visible band

    handles: list[object] = []
    label_transform = axes.get_xaxis_transform()  # x in data, y in axes fraction
    labelled = len(report.events) + len(report.dismissed) <= _MAX_EVENT_LABELS
    for events, color in ((report.events, "tab:red"), (report.dismissed, "tab:gray")):
        for event in events:
            start, end = event.start_s, max(event.end_s, event.start_s)
            if end - start < minimum_width:
                middle = (start + end) / 2
                start, end = middle - minimum_width / 2, middle + minimum_width / 2
            axes.axvspan(start, end, color=color, alpha=0.16, linewidth=0)
            if labelled:
                axes.text((start + end) / 2, 1.01, f"#{event.id}", transform=label_transform, ha="center",
                          va="bottom", fontsize=7, color=color, clip_on=False)
    if report.events:
        handles.append(Patch(color="tab:red", alpha=0.16, label="event"))
    if report.dismissed:
        handles.append(Patch(color="tab:gray", alpha=0.16, label="dismissed by the LLM"))

    marker = "o" if len(frames) == 1 else None  # a single point draws no line
    (line,) = axes.plot(times, proposer, color="tab:gray", alpha=0.55, linewidth=0.8, marker=marker,
                        markersize=3, label="proposer (0-1)")
    handles.append(line)
    (line,) = axes.plot(times, scores, color="tab:blue", linewidth=1.3, marker=marker, markersize=4,
                        label="score")
    handles.append(line)
    line = axes.axhline(report.threshold, color="black", linestyle="--", linewidth=0.8,
                        label=f"threshold {report.threshold:g}")
    handles.append(line)
    if len(gated):
        # A rug below zero: which frames were captioned and judged, without hiding the scores.
        axes.vlines(gated, 0.0, 0.045, transform=label_transform, color="tab:purple", linewidth=0.6, alpha=0.6)
        handles.append(Line2D([], [], color="tab:purple", marker="|", linestyle="none", markersize=7,
                              label=f"gated ({len(gated)})"))

    axes.set_xlim(low, high)
    axes.set_ylim(-0.09, 1.05)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("anomaly score")
    axes.grid(axis="y", color="0.9", linewidth=0.6)
    axes.spines[["top", "right"]].set_visible(False)
    if not frames:
        axes.text(0.5, 0.5, "no frames", transform=axes.transAxes, ha="center", va="center", color="0.4")
    axes.legend(handles=handles, loc="upper left", fontsize=7, ncol=len(handles), frameon=False,
                bbox_to_anchor=(0, -0.2))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _time_range(report: DetectReport, times: np.ndarray) -> tuple[float, float]:
    values = [*times.tolist(), *(t for event in report.events for t in (event.start_s, event.end_s))]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return low - 0.5, high + 0.5
    pad = 0.01 * (high - low)
    return low - pad, high + pad
