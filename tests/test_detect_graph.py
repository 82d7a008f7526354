"""The detect_captions graph: scores, events, the LLM budget, checkpoint resume and bad input.

The LLM is a scripted endpoint (control flow only) and the embedder a hashed bag of words, so
these run in seconds; tests/test_caption_benchmark_real.py runs the real models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.detect_captions import DetectConfig, detect_captions
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import Gateway

from tests.conftest import HashEmbedder, ScriptedOpenAI

WALK = "There are two people. The first person is walking on the pathway, the second person is walking."
BIKE = "There are two people. The first person is walking on the pathway, the second person is riding a bicycle."
RULES = RuleSet(scene="cam1", rules=[
    Rule(text="Riding a bicycle", kind="anomaly"), Rule(text="Driving a car", kind="anomaly"),
    Rule(text="Walking on the pathway", kind="normal"), Rule(text="Standing near a bench", kind="normal")])
JUDGE = {"llm_weight": 0.5}  # piece judgments on (the default spends no call on them)
ANOMALY_LETTER = {"A": -0.05, "B": -3.0}  # option A is always the nearest anomaly rule
NORMAL_LETTER = {"A": -3.0, "B": -0.05}  # option B the nearest normal rule


def sensible_model(body: dict) -> tuple[str, dict[str, float]]:
    """A stand-in judge: vehicles are anomalies, everything else normal (control flow only)."""
    observation = body["messages"][-1]["content"].rsplit("Observation:", 1)[-1]
    vehicle = any(word in observation for word in ("bicycle", "car", "truck", "scooter", "skateboard", "cart"))
    return ("A", ANOMALY_LETTER) if vehicle else ("B", NORMAL_LETTER)


def make_runtime(tmp_path: Path) -> Runtime:
    settings = load_settings()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=HashEmbedder(),
                   checkpoint_path=tmp_path / "checkpoints.sqlite")


def judgment_requests(script: ScriptedOpenAI) -> list[dict]:
    """The piece judgments (one answer letter each), not the events' full deductions."""
    return [r for r in script.requests if r.get("logprobs") and r.get("max_tokens") == 1]


@pytest.fixture
def scripted(scripted_openai: ScriptedOpenAI) -> ScriptedOpenAI:
    scripted_openai.responder = sensible_model
    return scripted_openai


def test_a_rule_breaking_span_becomes_an_event(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    captions = [WALK] * 30 + [BIKE] * 20 + [WALK] * 30
    result = detect_captions(captions, video="v1", scene="cam1", rules=RULES, config=DetectConfig(**JUDGE),
                             runtime=make_runtime(tmp_path))
    scores = result.scores
    inside, outside = scores[35:50], scores[:25] + scores[60:]
    assert min(inside) > max(outside)
    assert len(result.events) == 1
    event = result.events[0]
    assert 28 <= event.start <= 40 and 45 <= event.end <= 60
    assert "Riding a bicycle" in event.broken_rules
    assert event.reason  # the scripted model gives no valid explanation, so the matched rule explains it
    # the event is explained from the frame that names the bicycle, not from the smoothed peak
    frame = result.frames[event.evidence_frame]
    assert frame.anomalous and frame.evidence and "bicycle" in frame.evidence
    assert "bicycle" in event.reason and "walking" not in event.reason
    assert all(not f.broken_rules for f in result.frames if f.evidence and "walking" in f.evidence)
    assert "keyword" in {f.source for f in result.frames}
    asked = {r["messages"][-1]["content"].rsplit("Observation: ", 1)[1] for r in judgment_requests(scripted)}
    assert "person is riding a bicycle" in asked
    assert "person is walking on the pathway" not in asked  # plainly normal: the gate scored it cheaply
    assert result.llm_calls == len(scripted.requests)
    assert result.llm_calls <= 0.25 * len(captions)


def test_the_gate_keeps_to_the_llm_budget(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    vehicles = ["bicycle", "car", "truck", "scooter", "skateboard", "cart", "van", "bus", "tractor", "motorbike"]
    captions = [f"The first person is riding a {v} fast." for v in vehicles for _ in range(4)]
    config = DetectConfig(max_llm_calls_per_frame=0.2, explain_events=0, **JUDGE)
    result = detect_captions(captions, video="v2", scene="cam1", rules=RULES, config=config,
                             runtime=make_runtime(tmp_path))
    assert len(judgment_requests(scripted)) == int(0.2 * len(captions))  # 10 distinct pieces, budget 8
    assert result.llm_calls == len(scripted.requests)
    assert {f.source for f in result.frames} <= {"keyword", "llm", "cheap", "reused"}


def test_by_default_the_llm_only_explains_events(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    result = detect_captions([WALK] * 30 + [BIKE] * 20 + [WALK] * 30, video="d", rules=RULES,
                             runtime=make_runtime(tmp_path))
    assert not judgment_requests(scripted)
    assert result.events and all(r.get("response_format") for r in scripted.requests)
    assert result.llm_calls == len(scripted.requests) <= 2 * len(result.events)
    assert min(result.scores[35:50]) > max(result.scores[:25])


def test_judgments_are_reused_across_videos_with_the_same_rules(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path)
    config = DetectConfig(explain_events=0, **JUDGE)
    detect_captions([WALK] * 10 + [BIKE] * 10, video="a", rules=RULES, config=config, runtime=runtime)
    first = len(scripted.requests)
    second = detect_captions([BIKE] * 10 + [WALK] * 10, video="b", rules=RULES, config=config, runtime=runtime)
    assert first > 0 and len(scripted.requests) == first  # nothing judged twice
    assert "reused" in {f.source for f in second.frames}


def test_an_interrupted_run_resumes_without_redoing_work(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    things = ["bicycle", "car", "truck", "scooter", "skateboard", "cart"]
    captions = [f"The first person is driving a {t} fast." for t in things for _ in range(5)]
    config = DetectConfig(batch_size=1, explain_events=0, reuse_cosine=1.0, **JUDGE)
    calls = {"n": 0}

    def stop_after_two(stage: str, done: int, total: int) -> None:
        calls["n"] += 1
        if done == 2:  # called before the third judgment: two are done and checkpointed
            raise KeyboardInterrupt

    runtime = make_runtime(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        detect_captions(captions, video="v3", rules=RULES, config=config, runtime=runtime, thread_id="t1",
                        progress=stop_after_two)
    assert len(judgment_requests(scripted)) == 2
    resumed = detect_captions(captions, video="v3", rules=RULES, config=config, runtime=make_runtime(tmp_path),
                              thread_id="t1")
    judged = judgment_requests(scripted)
    pieces = [r["messages"][-1]["content"].rsplit("Observation: ", 1)[1] for r in judged]
    assert len(pieces) == len(set(pieces)) == 6  # each piece judged exactly once over both runs
    assert len(resumed.frames) == len(captions)
    again = detect_captions(captions, video="v3", rules=RULES, config=config, runtime=make_runtime(tmp_path),
                            thread_id="t1")
    assert len(judgment_requests(scripted)) == 6  # a finished thread returns its stored result
    assert again.scores == resumed.scores


def test_an_llm_that_stays_invalid_falls_back_to_cheap_signals(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    scripted.responder = lambda body: ("Sure", {"Sure": -0.01, "I": -5.0})
    result = detect_captions([WALK] * 10 + [BIKE] * 10, video="v4", rules=RULES, config=DetectConfig(**JUDGE),
                             runtime=make_runtime(tmp_path))
    assert result.fallback_frames > 0
    assert len(result.frames) == 20
    assert max(result.scores[10:]) > max(result.scores[:5])


def test_rules_are_induced_once_per_scene_and_kept_in_memory(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    induced = {"normal_human_activities": ["Walking on the pathway"], "normal_objects": ["Trees"],
               "anomaly_human_activities": ["Riding a bicycle"], "anomaly_objects": ["Cars on the pathway"]}
    scripted.responder = lambda body: ((json.dumps(induced), None) if body.get("response_format")
                                       else sensible_model(body))
    runtime = make_runtime(tmp_path)
    config = DetectConfig(explain_events=0)
    first = detect_captions([WALK] * 10 + [BIKE] * 10, video="a", scene="plaza", config=config, runtime=runtime)
    assert first.rules_version == 1
    stored = runtime.memory.latest("plaza")
    assert stored is not None and stored.source == "induced"
    assert [r.text for r in stored.anomaly] == ["Riding a bicycle", "Cars on the pathway"]
    inductions = [r for r in scripted.requests if r.get("response_format")]
    assert len(inductions) == 1
    detect_captions([BIKE] * 5 + [WALK] * 5, video="b", scene="plaza", config=config, runtime=runtime)
    assert len([r for r in scripted.requests if r.get("response_format")]) == 1  # the memory's rules are used


@pytest.mark.parametrize("captions, rules, fragment", [
    ([], RULES, "no captions"),
    (["", "  "], RULES, "captions are empty"),
    ([WALK], RuleSet(rules=[Rule(text="Walking", kind="normal")]), "no anomaly rule"),
])
def test_bad_input_is_a_clear_error(captions: list[str], rules: RuleSet, fragment: str, tmp_path: Path,
                                    scripted: ScriptedOpenAI) -> None:
    with pytest.raises(SleuthError, match=fragment) as caught:
        detect_captions(captions, video="bad", rules=rules, runtime=make_runtime(tmp_path))
    assert "\n" not in str(caught.value)


def test_proposer_scores_must_match_the_frames(tmp_path: Path, scripted: ScriptedOpenAI) -> None:
    with pytest.raises(SleuthError, match="proposer scores"):
        detect_captions([WALK] * 3, rules=RULES, proposer_scores=[0.1], runtime=make_runtime(tmp_path))


def test_proposer_scores_raise_the_frames_they_flag(tmp_path: Path, scripted: ScriptedOpenAI) -> None:
    proposer = [0.0] * 20 + [1.0] * 10 + [0.0] * 20
    config = DetectConfig(explain_events=0, smoothing="none")
    result = detect_captions([WALK] * 50, video="p", rules=RULES, proposer_scores=proposer, config=config,
                             runtime=make_runtime(tmp_path))
    assert min(result.scores[20:30]) > max(result.scores[:20])


def test_a_long_rule_set_is_cut_to_the_rules_nearest_the_caption(tmp_path: Path) -> None:
    from sleuth.graphs.detect_captions.graph import _relevant_rules

    many = RuleSet(rules=[Rule(text=f"Rule number {i} about {topic}", kind=kind)
                          for i, (topic, kind) in enumerate([("bicycles", "anomaly"), ("fires", "anomaly"),
                                                              ("dogs", "anomaly"), ("walking", "normal"),
                                                              ("benches", "normal"), ("trees", "normal")])])
    cut = _relevant_rules(many, "a man rides bicycles past the walking crowd", make_runtime(tmp_path), 2)
    assert [r.text for r in cut.rules] == ["Rule number 0 about bicycles", "Rule number 3 about walking"]
    assert _relevant_rules(many, "anything", make_runtime(tmp_path), 10) is many


def test_video_reasoning_keeps_the_settings_its_benchmark_measured() -> None:
    """The keyword fusion was chosen on CogVLM captions; the video pipeline was measured without it."""
    from sleuth.graphs.detect import VideoDetectConfig

    reasoning = VideoDetectConfig().reasoning
    assert (reasoning.keyword_weight, reasoning.embedding_weight, reasoning.smoothing) == (0.0, 1.0, "ema_vote")
    assert reasoning.min_rule_score == 0.5 and reasoning.proposer_weight == 0.3
    assert DetectConfig().keyword_weight > 0 and DetectConfig().smoothing == "anomalyruler"


def validator(anomaly: bool, reason: str):  # noqa: ANN201 - a responder for ScriptedOpenAI
    """Piece judgments as ``sensible_model``; each event's full deduction answers ``anomaly``."""
    def respond(body: dict) -> tuple[str, dict[str, float] | None]:
        if body.get("response_format"):
            return json.dumps({"verdict": "anomaly" if anomaly else "normal", "broken_rules": [1] if anomaly else [],
                               "reason": reason}), None
        return sensible_model(body)
    return respond


BIKE_SPAN = [WALK] * 30 + [BIKE] * 20 + [WALK] * 30


def test_validation_dismisses_an_event_the_llm_judges_normal(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    scripted.responder = validator(False, "A person riding a bicycle on this pathway is normal here.")
    config = DetectConfig(**JUDGE, validate_events=True)
    result = detect_captions(BIKE_SPAN, video="v1", scene="cam1", rules=RULES, config=config,
                             runtime=make_runtime(tmp_path))
    assert result.events == []  # HyCoVAD: the proposer and rules propose, the LLM's verdict disposes
    (dismissed,) = result.dismissed
    assert dismissed.verdict == "dismissed" and dismissed.anomaly_probability == 0.0
    assert dismissed.reason.startswith("Dismissed: the LLM judged the span's strongest evidence ('")
    assert dismissed.reason.endswith("It said: A person riding a bicycle on this pathway is normal here.")
    span = result.frames[dismissed.start: dismissed.end + 1]
    # the plot agrees with the verdict: no frame of the span stays anomalous or above the threshold
    assert not any(frame.anomalous or frame.broken_rules for frame in span)
    assert all(frame.score < config.threshold for frame in span)
    assert max(frame.prior_score or 0.0 for frame in span) > config.threshold  # what it was, kept
    assert all(frame.prior_score is None for frame in result.frames[:dismissed.start])


def test_validation_confirms_an_event_the_llm_judges_anomalous(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    scripted.responder = validator(True, "The second person rides a bicycle, which the rules forbid.")
    result = detect_captions(BIKE_SPAN, video="v1", scene="cam1", rules=RULES,
                             config=DetectConfig(**JUDGE, validate_events=True), runtime=make_runtime(tmp_path))
    (event,) = result.events
    assert event.verdict == "confirmed" and event.anomaly_probability == 1.0 and not result.dismissed
    assert "bicycle" in event.reason and all(frame.prior_score is None for frame in result.frames)


def test_without_validation_the_verdict_is_recorded_but_changes_nothing(scripted: ScriptedOpenAI,
                                                                        tmp_path: Path) -> None:
    scripted.responder = validator(False, "A person riding a bicycle is normal here.")
    result = detect_captions(BIKE_SPAN, video="v1", scene="cam1", rules=RULES, config=DetectConfig(**JUDGE),
                             runtime=make_runtime(tmp_path))
    (event,) = result.events
    assert event.verdict == "unjudged" and event.anomaly_probability == 0.0 and not result.dismissed
    # the kept event is explained by its evidence, not by the model's case for "normal" (read in the main job)
    assert "is normal here" not in event.reason and event.reason.startswith("The caption says '")
    assert event.reason.endswith("The LLM leaned to normal (probability of an anomaly 0.00); the event stands "
                                 "because validation is off.")


def test_the_proposer_reason_is_evidence_for_the_event_deduction(scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    scripted.responder = validator(True, "A person rides a bicycle.")
    notes = [None] * 40 + ["A bicycle: a kind of object the scene's normal footage does not show."] + [None] * 39
    detect_captions(BIKE_SPAN, video="v1", scene="cam1", rules=RULES, proposer_scores=[0.2] * 80, notes=notes,
                    config=DetectConfig(**JUDGE), runtime=make_runtime(tmp_path))
    deductions = [r for r in scripted.requests if r.get("response_format")]
    assert deductions and "normal footage does not show" in deductions[0]["messages"][-1]["content"]


def test_the_anomaly_probability_comes_from_the_verdict_token() -> None:
    from sleuth.agents.deduction import anomaly_probability

    def item(token: str, top: dict[str, float]) -> dict:
        return {"token": token, "logprob": top.get(token, -1.0), "top_logprobs": top}

    head = [item("{", {}), item(' "', {}), item("verdict", {}), item('":', {}), item(' "', {})]
    # after the opening quote only "an..." and "no..." are allowed: 'An' and ' anomaly' are not
    verdict = item("normal", {"An": math.log(0.4), "normal": math.log(0.3), "an": math.log(0.1),
                              " anomaly": math.log(0.05), "no": math.log(0.1)})
    later = item("an", {"an": 0.0})  # an "an" in the reason is not the verdict
    assert anomaly_probability([*head, verdict, item('",', {}), later]) == pytest.approx(0.1 / 0.5)
    merged = [*head[:4], item(' "an', {' "an': math.log(0.6), ' "normal': math.log(0.2), "an": math.log(0.2)})]
    assert anomaly_probability(merged) == pytest.approx(0.75)  # a token that brings the quote with it
    assert anomaly_probability(None) is None and anomaly_probability([item("x", {})]) is None
