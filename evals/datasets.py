"""Caption datasets in the AnomalyRuler layout: per-frame captions, and frame labels kept apart.

A dataset folder (``../shared/data/anomalyruler/ped2``, ``.../avenue`` or any folder laid out the
same way) holds::

    test.csv                             image_path,label for every frame of every video, in order
    test_frame/test_NN.csv               the same rows for video NN
    test_frame_description/test_NN.txt   one caption per line, one line per frame of video NN
    rules.txt                            optional: normal and anomaly rules (AnomalyRuler Markdown)

Captions and labels are loaded by two different functions so that a method that must not see
labels (rules induced from the test footage itself) provably never does:

- :func:`load_captions` opens only the caption files. It checks each caption file against the
  *number of rows* of its label file (so a mismatch fails before any LLM work), but never parses
  a label value.
- :func:`load_labels` reads the label values, checks them against ``test.csv`` and returns a
  :class:`LabeledDataset`; call it only once every score is final.

Every problem is a :class:`DatasetError` whose message is one line naming the video and file.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field
from sleuth.errors import SleuthError

CAPTIONS_DIR = "test_frame_description"
LABELS_DIR = "test_frame"
ALL_LABELS = "test.csv"
RULES = "rules.txt"
LAYOUT = (f"expected a folder with {CAPTIONS_DIR}/test_NN.txt (one caption per line per frame), "
          f"{LABELS_DIR}/test_NN.csv (image_path,label per frame) and optionally {ALL_LABELS} and {RULES}")


class DatasetError(SleuthError):
    """A caption dataset folder is missing, in the wrong layout, or inconsistent."""


class CaptionVideo(BaseModel):
    """One test video: its captions only (no labels)."""

    id: str = Field(description="Video id as in the file names, e.g. '01' for test_01.txt.")
    captions: list[str]
    total_frames: int = Field(description="Captions in the file (``captions`` may be cut by max_frames).")
    caption_file: Path
    label_file: Path

    @property
    def frames(self) -> int:
        return len(self.captions)


class LabeledVideo(CaptionVideo):
    """One test video with its frame labels (1 = anomalous)."""

    labels: list[int]
    image_paths: list[str]

    @property
    def anomalous_frames(self) -> int:
        return sum(self.labels)


class CaptionDataset(BaseModel):
    """The captions of a dataset's test videos, without any label."""

    name: str
    root: Path
    videos: list[CaptionVideo]
    rules_file: Path | None = Field(default=None, description="The dataset's rules.txt when it has one.")
    max_frames: int | None = None

    @property
    def frames(self) -> int:
        return sum(video.frames for video in self.videos)

    def captions_by_video(self) -> dict[str, list[str]]:
        return {video.id: video.captions for video in self.videos}


class LabeledDataset(CaptionDataset):
    """Captions and labels of a dataset's test videos."""

    videos: list[LabeledVideo]  # type: ignore[assignment]

    @property
    def anomalous_frames(self) -> int:
        return sum(video.anomalous_frames for video in self.videos)

    def labels_by_video(self) -> dict[str, list[int]]:
        return {video.id: video.labels for video in self.videos}


def video_id(path: Path) -> str:
    """``test_03.txt`` -> ``03`` (any stem without the ``test_`` prefix)."""
    return path.stem.removeprefix("test_")


def _sort_key(video: str) -> tuple[int, str]:
    return (int(video), video) if video.isdigit() else (1 << 30, video)


def _check_layout(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The caption and label files by video id; raises unless the layout is right."""
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist", hint=LAYOUT)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder", hint=LAYOUT)
    missing = [name for name in (CAPTIONS_DIR, LABELS_DIR) if not (root / name).is_dir()]
    if missing:
        raise DatasetError(f"{root} is not a caption dataset: no {' or '.join(m + '/' for m in missing)} "
                           "folder", hint=LAYOUT)
    captions = {video_id(p): p for p in (root / CAPTIONS_DIR).glob("*.txt") if p.is_file()}
    labels = {video_id(p): p for p in (root / LABELS_DIR).glob("*.csv") if p.is_file()}
    if not captions:
        raise DatasetError(f"{root} has no videos: {root / CAPTIONS_DIR} holds no .txt caption file",
                           hint=LAYOUT)
    without_labels = sorted(set(captions) - set(labels), key=_sort_key)
    if without_labels:
        raise DatasetError(f"video {without_labels[0]}: {captions[without_labels[0]]} has no label file "
                           f"{root / LABELS_DIR / (captions[without_labels[0]].stem + '.csv')}"
                           + (f" ({len(without_labels)} videos without labels)" if len(without_labels) > 1 else ""))
    without_captions = sorted(set(labels) - set(captions), key=_sort_key)
    if without_captions:
        raise DatasetError(f"video {without_captions[0]}: {labels[without_captions[0]]} has no caption file "
                           f"{root / CAPTIONS_DIR / (labels[without_captions[0]].stem + '.txt')}"
                           + (f" ({len(without_captions)} videos without captions)"
                              if len(without_captions) > 1 else ""))
    return captions, labels


def _read_captions(video: str, path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"video {video}: {path} is not UTF-8 text (byte {exc.start})") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:  # trailing blank lines; a missing last caption shows as a count mismatch
        lines.pop()
    if not lines:
        raise DatasetError(f"video {video}: no captions in {path} (the file is empty)")
    empty = [number for number, line in enumerate(lines, 1) if not line]
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        raise DatasetError(f"video {video}: {len(empty)} empty caption(s) of {len(lines)} in {path} "
                           f"(line {shown})", hint="every frame needs a caption")
    return lines


def _read_rows(video: str, path: Path) -> list[list[str]]:
    """The data rows of a label CSV (header ``image_path,label`` dropped when present)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"video {video}: {path} is not a readable CSV ({exc})") from None
    if rows and rows[0][-1].strip().lower() == "label":
        rows = rows[1:]
    return rows


def _count_rows(video: str, path: Path) -> int:
    """How many frames a label file lists; the label values are not looked at."""
    return len(_read_rows(video, path))


def _mismatch(video: str, captions: int, labels: int, caption_file: Path, label_file: Path) -> DatasetError:
    return DatasetError(f"video {video}: {captions} captions but {labels} labels in {caption_file} and "
                        f"{label_file}", hint="one caption line per labelled frame is expected")


def _select(available: Sequence[str], videos: Sequence[str] | None, root: Path) -> list[str]:
    ordered = sorted(available, key=_sort_key)
    if not videos:
        return ordered
    wanted = []
    for raw in videos:
        name = raw.strip().removeprefix("test_")
        if name.isdigit() and name not in available:  # "1" -> "01"
            name = next((v for v in available if v.isdigit() and int(v) == int(name)), name)
        if name not in available:
            raise DatasetError(f"video {raw} is not in {root}",
                               hint=f"available: {', '.join(ordered[:30])}{' ...' if len(ordered) > 30 else ''}")
        if name not in wanted:
            wanted.append(name)
    return sorted(wanted, key=_sort_key)


def load_captions(root: Path, *, videos: Sequence[str] | None = None,
                  max_frames: int | None = None) -> CaptionDataset:
    """The captions of every test video (or of ``videos``), first ``max_frames`` of each.

    Reads no label value: the label files are only counted, so that a caption file whose line
    count differs from its labels fails here, before any model runs.
    """
    root = Path(root)
    caption_files, label_files = _check_layout(root)
    loaded = []
    for video in _select(list(caption_files), videos, root):
        captions = _read_captions(video, caption_files[video])
        rows = _count_rows(video, label_files[video])
        if rows != len(captions):
            raise _mismatch(video, len(captions), rows, caption_files[video], label_files[video])
        if max_frames is not None:
            if max_frames < 1:
                raise DatasetError(f"max_frames must be at least 1, not {max_frames}")
            captions = captions[:max_frames]
        loaded.append(CaptionVideo(id=video, captions=captions, total_frames=rows, caption_file=caption_files[video],
                                   label_file=label_files[video]))
    rules = root / RULES
    return CaptionDataset(name=root.resolve().name, root=root, videos=loaded,
                          rules_file=rules if rules.is_file() else None, max_frames=max_frames)


def _read_labels(video: str, path: Path) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for number, row in enumerate(_read_rows(video, path), 1):
        value = row[-1].strip()
        if value not in ("0", "1"):
            raise DatasetError(f"video {video}: label {value!r} in data row {number} of {path} is not 0 or 1")
        paths.append(row[0].strip() if len(row) > 1 else "")
        labels.append(int(value))
    return paths, labels


def load_labels(dataset: CaptionDataset) -> LabeledDataset:
    """Attach frame labels to loaded captions (read from ``test_frame/test_NN.csv``).

    The per-video labels of the whole dataset must concatenate, in video order, to ``test.csv``
    when the folder has one.
    """
    root = dataset.root
    caption_files, label_files = _check_layout(root)
    per_video = {video: _read_labels(video, label_files[video]) for video in sorted(label_files, key=_sort_key)}
    _check_concatenation(root, per_video)
    labeled = []
    for video in dataset.videos:
        paths, labels = per_video[video.id]
        if len(labels) != video.total_frames:
            raise _mismatch(video.id, video.total_frames, len(labels), video.caption_file, video.label_file)
        labeled.append(LabeledVideo(**video.model_dump(), labels=labels[:video.frames],
                                    image_paths=paths[:video.frames]))
    return LabeledDataset(name=dataset.name, root=root, videos=labeled, rules_file=dataset.rules_file,
                          max_frames=dataset.max_frames)


def _check_concatenation(root: Path, per_video: dict[str, tuple[list[str], list[int]]]) -> None:
    whole = root / ALL_LABELS
    if not whole.is_file():
        return
    rows = _read_rows("(all)", whole)
    concatenated = [(path, label, video) for video, (paths, labels) in per_video.items()
                    for path, label in zip(paths, labels, strict=True)]
    if len(rows) != len(concatenated):
        raise DatasetError(f"{whole} has {len(rows)} frames but the {len(per_video)} files in "
                           f"{root / LABELS_DIR} have {len(concatenated)} together")
    for number, (row, (path, label, video)) in enumerate(zip(rows, concatenated, strict=True), 1):
        if row[-1].strip() != str(label) or (len(row) > 1 and path and row[0].strip() != path):
            raise DatasetError(f"video {video}: {root / LABELS_DIR} disagrees with {whole} at data row {number} "
                               f"({','.join(row)} vs {path},{label})")


def load_dataset(root: Path, *, videos: Sequence[str] | None = None,
                 max_frames: int | None = None) -> LabeledDataset:
    """Captions and labels together (for methods that may see labels, and for tests)."""
    return load_labels(load_captions(root, videos=videos, max_frames=max_frames))


def parse_videos(text: str | None) -> list[str] | None:
    """``"01,02 5"`` -> ``["01", "02", "5"]``; None or blank -> None (all videos)."""
    if not text:
        return None
    return [part for part in re.split(r"[,\s]+", text) if part] or None
