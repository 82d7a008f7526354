"""The caption class check: what it counts as naming the class of what moves, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sleuth.evals.caption_classes import REFERENCE_WORDS as REF
from sleuth.evals.caption_classes import CaptionCheckError, classes_named, main, score


def test_reference_classes_come_from_cogvlm_words_and_vehicle_alone_is_no_class() -> None:
    assert classes_named("A man is riding a bike past two pedestrians.", REF) == {"bicycle"}
    assert classes_named("A skateboarder and a cyclist on the walkway", REF) == {"bicycle", "skateboard"}
    assert classes_named("A cart, a small vehicle, is pushed across.", REF) == set()  # carts are no class
    assert classes_named("The bikers' path", REF) == set()  # whole words only


def test_a_captioner_that_always_says_bicycle_is_caught_on_normal_frames() -> None:
    references = ["A person riding a bicycle.", "A skateboarder.", "People walking.", "People walking."]
    labels = [1, 1, 0, 0]

    honest = score(references, ["1 person. A person riding a bicycle ...", "1 person, 1 object.",
                                "2 people.", "2 people."], labels)
    always = score(references, ["1 bicycle."] * 4, labels)

    assert honest["named_right"] == 50.0 and honest["false_naming_normal"] == 0.0
    assert honest["by_class"]["bicycle"] == {"recall": 100.0, "frames": 1}
    assert honest["by_class"]["skateboard"] == {"recall": 0.0, "frames": 1}
    assert honest["examples"][0]["frame"] == 1  # the missed skateboard is listed to read
    assert always["named_right"] == 50.0 and always["false_naming_normal"] == 100.0
    assert always["people_named"] == 0.0


def test_missing_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Ped2 test frames not found") and "\n" not in err
    with pytest.raises(CaptionCheckError):
        score(["a"], [], [1])
