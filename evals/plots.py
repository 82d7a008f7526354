"""Score-versus-frame plots, one PNG per video, with the ground truth shaded.

Drawn with matplotlib's object API on an Agg canvas: no display, no global pyplot state, safe in
threads and on servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sleuth.tools.smoothing import anomalous_spans


def plot_video(path: Path, *, video: str, scores: Sequence[float], labels: Sequence[int] | None = None,
               threshold: float | None = None, decisions: Sequence[bool] | None = None,
               raw_scores: Sequence[float] | None = None, auc: float | None = None,
               title: str | None = None) -> Path:
    """Write a PNG of ``scores`` over frames; anomalous ground-truth frames shaded red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    frames = range(len(scores))
    figure = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    handles: list[Any] = []
    for start, end in anomalous_spans(labels or []):
        axes.axvspan(start - 0.5, end + 0.5, color="tab:red", alpha=0.18, linewidth=0)
    if labels is not None and any(labels):
        handles.append(Patch(color="tab:red", alpha=0.18, label="ground truth anomalous"))
    if raw_scores is not None:
        (line,) = axes.plot(frames, raw_scores, color="0.6", linewidth=0.6, drawstyle="steps-mid",
                            label="raw score")
        handles.append(line)
    (line,) = axes.plot(frames, scores, color="tab:blue", linewidth=1.4, label="score")
    handles.append(line)
    if decisions is not None:
        for start, end in anomalous_spans(decisions):
            axes.plot([start - 0.5, end + 0.5], [1.04, 1.04], color="tab:orange", linewidth=4,  # 0-1 scores
                      solid_capstyle="butt")
        handles.append(Patch(color="tab:orange", label="flagged anomalous"))
    if threshold is not None:
        line = axes.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label=f"threshold {threshold:g}")
        handles.append(line)
    axes.set_xlim(-0.5, max(len(scores) - 0.5, 0.5))
    values = [v for v in [*scores, *(raw_scores or []), *([threshold] if threshold is not None else [])]
              if v == v]  # drop NaN
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low >= -0.03 and high <= 1.08:  # probabilities: a fixed 0-1 axis compares plots
        axes.set_ylim(-0.03, 1.08)
    else:  # unbounded scores (e.g. the proposer's z-scores)
        pad = 0.05 * (high - low or 1.0)
        axes.set_ylim(low - pad, high + pad)
    axes.set_xlabel("frame")
    axes.set_ylabel("anomaly score")
    auc_text = "AUC n/a (one class)" if auc is None else f"AUC {auc * 100:.1f}"
    axes.set_title(title or f"video {video} · {auc_text}", fontsize=10)
    axes.legend(handles=handles, loc="upper left", fontsize=7, ncol=len(handles), frameon=False,
                bbox_to_anchor=(0, -0.22))
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
