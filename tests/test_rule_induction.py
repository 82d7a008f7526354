"""Rule induction from unlabeled captions: per-video induction, aggregation, demotion of the common."""

from __future__ import annotations

import json
from pathlib import Path

from sleuth.agents.rules import demote_common_anomalies, induce_from_unlabeled
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.llm.gateway import Gateway

from tests.conftest import HashEmbedder, ScriptedOpenAI

CAPTIONS = ["The first person is walking on the pathway, the second person is walking."] * 18 + \
           ["The first person is riding a bicycle."] * 2


def test_an_anomaly_rule_that_describes_most_frames_becomes_normal() -> None:
    rules = RuleSet(rules=[Rule(text="Walking on the pathway", kind="anomaly"),
                           Rule(text="Riding a bicycle", kind="anomaly"),
                           Rule(text="Standing near a bench", kind="normal")])
    fixed = demote_common_anomalies(rules, CAPTIONS, HashEmbedder())
    assert [r.text for r in fixed.anomaly] == ["Riding a bicycle"]
    assert [r.text for r in fixed.normal] == ["Walking on the pathway", "Standing near a bench"]


def test_induction_samples_every_video_and_merges(scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    answer = {"normal_human_activities": ["Walking on the pathway"], "normal_objects": ["Trees"],
              "anomaly_human_activities": ["Riding a bicycle", "Walking on the pathway"],
              "anomaly_objects": ["Cars", "None"]}
    scripted_openai.replies = [json.dumps(answer)]
    rules = induce_from_unlabeled({"01": CAPTIONS, "02": CAPTIONS[::-1]}, per_video=5, scene="plaza",
                                  gateway=Gateway(), embedder=HashEmbedder())
    assert len(scripted_openai.requests) == 2  # one induction per video
    sampled = scripted_openai.requests[0]["messages"][-1]["content"]
    assert sampled.count("\n- ") == 2  # the two distinct captions, each listed once
    assert rules.source == "induced" and rules.scene == "plaza"
    assert [r.text for r in rules.anomaly] == ["Riding a bicycle", "Cars"]
    assert "Walking on the pathway" in [r.text for r in rules.normal]


def test_a_sample_the_model_answers_badly_twice_is_skipped_not_the_whole_induction(
        scripted_openai: ScriptedOpenAI) -> None:
    """The 0.5B once cut off its JSON on one of three samples of Robbery102's captions, and the whole
    calibration failed. The other samples still give rules; only when every sample fails does it."""
    import pytest
    from sleuth.errors import StructuredOutputError

    answer = {"normal_human_activities": ["Walking on the pathway"], "normal_objects": [],
              "anomaly_human_activities": ["Riding a bicycle"], "anomaly_objects": []}
    scripted_openai.replies = ['{"normal_human_activities": ["Walk', '{"normal_', json.dumps(answer)]
    rules = induce_from_unlabeled({"01": CAPTIONS, "02": CAPTIONS[::-1]}, per_video=5, scene="plaza",
                                  gateway=Gateway(), embedder=HashEmbedder())
    assert len(scripted_openai.requests) == 3  # the first sample and its retry failed, the second answered
    assert [r.text for r in rules.anomaly] == ["Riding a bicycle"]

    scripted_openai.replies = ['{"normal_']
    with pytest.raises(StructuredOutputError):
        induce_from_unlabeled({"01": CAPTIONS, "02": CAPTIONS[::-1]}, per_video=5, scene="plaza",
                              gateway=Gateway(), embedder=HashEmbedder())


def test_rules_induced_from_normal_footage_hold_on_it() -> None:
    """The main job's calibration on vtest.avi (people walking across a square) induced "Walking on
    the pathway" as an anomaly and rules pinned to screen positions; on normal footage they give way."""
    from sleuth.agents.rules import hold_on_normal_footage
    from sleuth.agents.schemas import Rule, RuleSet

    captions = ["2 people. A person in the centre is walking to the left, grey. A large object at the right is "
                "not moving, light grey."] * 8 + ["3 moving objects. A large object at the right is moving to the "
                                                  "left, dark grey."] * 2
    anomalies = ["Walking on the pathway", "Riding a bicycle", "Large object in the centre", "Object at the top right",
                 "Person lying on the ground", "Walking or running", "Crowd gathering", "Car at the top left"]
    rules = RuleSet(scene="plaza", rules=[Rule(text=text, kind="anomaly") for text in anomalies]
                    + [Rule(text="Person in the centre is walking to the left", kind="normal"),
                       Rule(text="person walking away and to the right, dark grey", kind="normal")])
    held, changes = hold_on_normal_footage(rules, captions)
    assert [r.text for r in held.anomaly] == ["Riding a bicycle", "Person lying on the ground", "Walking or running",
                                              "Crowd gathering", "Car"]
    assert [r.text for r in held.normal] == ["Walking on the pathway", "Person is walking to the left",
                                             "Person walking away and to the right"]  # no caption's colour
    assert any("Walking on the pathway" in change and "became normal" in change for change in changes)
    assert sum("screen position" in change for change in changes) == 5
