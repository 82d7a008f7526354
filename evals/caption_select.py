"""Caption validation protocol: choose the caption reasoning's settings on a split, report the rest.

``python -m sleuth.evals.caption_select --data ../shared/data/anomalyruler/ped2 --data
../shared/data/anomalyruler/avenue`` (each folder in the layout of :mod:`sleuth.evals.datasets`,
with its ``rules.txt``).

The defaults of :class:`~sleuth.graphs.detect_captions.DetectConfig` that decide a frame's score
(how much the keyword signal and the embedding margin weigh, and the temporal smoothing) are
chosen here, never on a whole test set:

1. every dataset's videos are split by position: the 1st, 3rd, 5th... video (in file order) form
   the **selection** split, the others the **report** split;
2. each candidate of a small grid fixed in advance (:data:`CANDIDATES`) is scored on every video
   with the dataset's rules; no LLM is asked (piece judgments are off by default);
3. the candidate with the best mean frame AUC over the datasets' selection splits is chosen,
   reading only the labels of those videos;
4. only then are the report split's labels read; the table shows every candidate on both splits
   and on all videos, and says whether the chosen candidate is the current default.

A dataset that is not passed here (say, a new one in the same layout) is run with the same
defaults by ``sleuth eval captions``: its number is untouched by any choice.

Writes ``selection.json`` and ``selection.md`` into ``--output`` (default ``results/caption-select``).
Two signals per dataset are computed once (keyword hits, embedding margins: about 20 s per
10,000 frames on 2 CPU cores); every candidate is a cheap combination of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sleuth.errors import SleuthError
from sleuth.evals.datasets import CaptionDataset, load_captions, load_labels
from sleuth.evals.metrics import frame_auc
from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.tools.smoothing import smooth


@dataclass(frozen=True)
class Candidate:
    keyword_weight: float
    embedding_weight: float
    smoothing: str
    ema_alpha: float = 0.1
    vote_window: int = 15

    @property
    def name(self) -> str:
        smoothing = (self.smoothing if self.smoothing != "ema_vote"
                     else f"ema_vote a={self.ema_alpha:g} w={self.vote_window}")
        return f"keyword {self.keyword_weight:g} + embedding {self.embedding_weight:g}, {smoothing}"

    def raw(self, hits: np.ndarray, margins: np.ndarray) -> np.ndarray:
        total = self.keyword_weight + self.embedding_weight
        return (self.keyword_weight * hits + self.embedding_weight * margins) / total

    def scores(self, hits: np.ndarray, margins: np.ndarray) -> np.ndarray:
        smoothed, _ = smooth(self.raw(hits, margins), method=self.smoothing,  # type: ignore[arg-type]
                             alpha=self.ema_alpha, window=self.vote_window)
        return np.asarray(smoothed, dtype=float)

    def matches(self, config: DetectConfig) -> bool:
        same_smoothing = config.smoothing == self.smoothing and (
            self.smoothing != "ema_vote" or (config.ema_alpha, config.vote_window) == (self.ema_alpha,
                                                                                    self.vote_window))
        return same_smoothing and (config.keyword_weight, config.embedding_weight) == (self.keyword_weight,
                                                                                      self.embedding_weight)


WEIGHTS = ((0.0, 1.0), (1.0, 1.0), (1.0, 0.5), (1.0, 0.25), (1.0, 0.1), (1.0, 0.0))
SMOOTHINGS = (("ema_vote", 0.1, 15), ("ema_vote", 0.05, 31), ("ema_vote", 0.2, 9), ("anomalyruler", 0.1, 15))
CANDIDATES = tuple(Candidate(k, e, s, a, w) for k, e in WEIGHTS for s, a, w in SMOOTHINGS)


def split(videos: list[str]) -> tuple[list[str], list[str]]:
    """(selection, report): the 1st, 3rd, 5th... video and the others, in file order."""
    return videos[0::2], videos[1::2]


def signals(dataset: CaptionDataset, runtime: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per video: keyword hits (0/1) and the strongest piece's embedding margin score per frame."""
    from sleuth.evals.caption_bench import read_rules
    from sleuth.graphs.detect_captions import detect_captions

    rules = read_rules(dataset.root / "rules.txt", scene=dataset.name)
    # One run with both signals at weight 1: a keyword frame is marked by its source, and the
    # rule score (hit + margin) / 2 gives the margin back.
    config = DetectConfig(smoothing="none", explain_events=0, llm_weight=0.0, min_rule_score=None,
                          keyword_weight=1.0, embedding_weight=1.0)
    out = {}
    for video in dataset.videos:
        result = detect_captions(video.captions, video=video.id, scene=dataset.name, rules=rules, config=config,
                                 runtime=runtime, thread_id=f"caption-select:{dataset.name}:{video.id}")
        hits = np.array([frame.source == "keyword" for frame in result.frames], dtype=float)
        rule_scores = np.array([frame.rule_score or 0.0 for frame in result.frames])
        out[video.id] = (hits, 2 * rule_scores - hits)
    return out


def _auc(candidate: Candidate, data: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, list[int]],
         videos: list[str]) -> float:
    scores = np.concatenate([candidate.scores(*data[video]) for video in videos])
    truth = np.concatenate([labels[video] for video in videos])
    auc = frame_auc(truth, scores)
    return float("nan") if auc is None else round(100 * auc, 1)


def run(folders: list[Path], output: Path, runtime: Any = None) -> dict[str, Any]:
    from sleuth.graphs.runtime import Runtime

    runtime = runtime or Runtime.from_settings()
    datasets = [load_captions(folder) for folder in folders]  # no label is read here
    data = {}
    for dataset in datasets:
        print(f"signals of {dataset.name}: {len(dataset.videos)} videos, {dataset.frames} frames", file=sys.stderr)
        data[dataset.name] = signals(dataset, runtime)
    splits = {dataset.name: split([video.id for video in dataset.videos]) for dataset in datasets}
    # 1. choose on the selection split, reading only those videos' labels
    selection_labels = {dataset.name: load_labels(dataset.model_copy(update={"videos": [
        video for video in dataset.videos if video.id in splits[dataset.name][0]]})).labels_by_video()
        for dataset in datasets}
    rows = []
    for candidate in CANDIDATES:
        picked = {name: _auc(candidate, data[name], selection_labels[name], splits[name][0]) for name in data}
        rows.append({"candidate": candidate, "selection": picked, "selection_mean": round(float(np.mean(
            list(picked.values()))), 2)})
    chosen = max(rows, key=lambda row: row["selection_mean"])["candidate"]
    # 2. only now the other labels
    all_labels = {dataset.name: load_labels(dataset).labels_by_video() for dataset in datasets}
    for row in rows:
        candidate = row["candidate"]
        row["report"] = {name: _auc(candidate, data[name], all_labels[name], splits[name][1]) for name in data}
        row["all"] = {name: _auc(candidate, data[name], all_labels[name], splits[name][0] + splits[name][1])
                      for name in data}
    default = DetectConfig()
    result = {"datasets": [str(folder) for folder in folders], "splits": splits, "chosen": chosen.name,
              "chosen_is_default": chosen.matches(default),
              "default": {"keyword_weight": default.keyword_weight, "embedding_weight": default.embedding_weight,
                          "smoothing": default.smoothing, "ema_alpha": default.ema_alpha,
                          "vote_window": default.vote_window},
              "rows": [{**{k: v for k, v in row.items() if k != "candidate"}, "candidate": row["candidate"].name,
                        "chosen": row["candidate"] == chosen, "default": row["candidate"].matches(default)}
                       for row in rows]}
    output.mkdir(parents=True, exist_ok=True)
    (output / "selection.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (output / "selection.md").write_text(markdown(result), encoding="utf-8")
    return result


def markdown(result: dict[str, Any]) -> str:
    names = list(result["splits"])
    head = ["candidate", "selection mean"] + [f"{n} selection" for n in names] + [f"{n} report" for n in names] + [
        f"{n} all" for n in names]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for row in sorted(result["rows"], key=lambda r: -r["selection_mean"]):
        mark = (" **(chosen)**" if row["chosen"] else "") + (" (default)" if row["default"] else "")
        cells = [row["candidate"] + mark, f"{row['selection_mean']:.2f}"] + [
            f"{row[part][n]:.1f}" for part in ("selection", "report", "all") for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    verdict = ("the chosen candidate is the current default" if result["chosen_is_default"]
               else "the chosen candidate is NOT the current default")
    return "\n".join([f"Chosen on the selection split: {result['chosen']} ({verdict}).", ""] + lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleuth.evals.caption_select", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="A caption dataset folder with rules.txt (repeat for several).")
    parser.add_argument("--output", type=Path, default=Path("results/caption-select"))
    args = parser.parse_args(argv)
    try:
        result = run(args.data, args.output)
    except SleuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    print(f"wrote {args.output / 'selection.json'} and {args.output / 'selection.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
