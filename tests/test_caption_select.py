"""The caption validation protocol: settings chosen on a split of the videos, the rest reported untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sleuth.config import load_settings
from sleuth.evals import caption_select
from sleuth.evals.caption_select import CANDIDATES, split
from sleuth.graphs.detect_captions import DetectConfig
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import Gateway

from tests.conftest import HashEmbedder
from tests.test_caption_eval import REAL, make_dataset


def runtime(tmp_path: Path) -> Runtime:
    settings = load_settings()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=HashEmbedder(),
                   checkpoint_path=tmp_path / "checkpoints.sqlite")


def test_the_split_alternates_videos_in_file_order() -> None:
    assert split(["01", "02", "03", "04", "05"]) == (["01", "03", "05"], ["02", "04"])


def test_selection_reads_only_the_selection_videos_labels_before_choosing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_dataset(tmp_path / "one", {"01": [0] * 8 + [1] * 6 + [0] * 6, "02": [0] * 5 + [1] * 10,
                                            "03": [1] * 6 + [0] * 10, "04": [0] * 12 + [1] * 4})
    second = make_dataset(tmp_path / "two", {"01": [0] * 10 + [1] * 5, "02": [1] * 4 + [0] * 9})
    read: list[list[str]] = []
    original = caption_select.load_labels

    def recording(dataset):  # type: ignore[no-untyped-def]
        read.append([video.id for video in dataset.videos])
        return original(dataset)

    monkeypatch.setattr(caption_select, "load_labels", recording)
    result = caption_select.run([first, second], tmp_path / "out", runtime=runtime(tmp_path))
    assert read[:2] == [["01", "03"], ["01"]]  # the selection split of each dataset, before any other label
    assert result["splits"] == {"one": (["01", "03"], ["02", "04"]), "two": (["01"], ["02"])}
    rows = result["rows"]
    assert len(rows) == len(CANDIDATES)
    chosen = [row for row in rows if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["selection_mean"] == max(row["selection_mean"] for row in rows)
    assert sum(row["default"] for row in rows) == 1  # the current default is one of the candidates
    saved = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert saved["chosen"] == chosen[0]["candidate"]
    table = (tmp_path / "out" / "selection.md").read_text()
    assert "(chosen)" in table and "one report" in table and "two all" in table


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "ped2").is_dir(), reason="needs ../shared/data")
def test_the_defaults_are_what_the_protocol_chooses_on_real_captions(tmp_path: Path) -> None:
    """Changing DetectConfig's scoring defaults without rerunning the protocol fails here."""
    result = caption_select.run([REAL / "ped2", REAL / "avenue"], tmp_path / "out")
    assert result["chosen_is_default"], result["chosen"]
    chosen = next(row for row in result["rows"] if row["chosen"])
    keyword_only = next(row for row in result["rows"] if row["candidate"].startswith("keyword 1 + embedding 0,")
                        and "anomalyruler" in row["candidate"])
    assert chosen["all"]["avenue"] > keyword_only["all"]["avenue"]  # the embedding adds to the keywords
    assert DetectConfig().min_rule_score is not None  # relative smoothing, but events need the rules' support
