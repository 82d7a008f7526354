"""The calibrate and detect graphs end to end on small synthetic footage: rules stored and
versioned, false-alarm rules demoted, events with times and key frames, the gate, resume after an
interruption, reports, and one-line errors.

The LLM is a scripted endpoint (control flow only); the embedder (MiniLM), proposer, object
stage, structured captioner, rule memory and checkpointer are the real ones.
tests/test_pipeline_real.py runs the packaged LLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.calibrate import CalibrateConfig, calibrate
from sleuth.graphs.detect import VideoDetectConfig, detect_video
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import Gateway
from sleuth.memory.scenes import SceneStore
from sleuth.tools.embedder import TextEmbedder
from sleuth.tools.frames import VideoError

from tests.conftest import ScriptedOpenAI
from tests.synthetic_video import Mover, render, write_video

TINY = {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16, "memory_slots": 10, "smooth_frames": 1.0}
WALKERS = [Mover(5, 30, 10, 20, vx=12), Mover(140, 75, 10, 20, vx=-12)]
FAST = Mover(-220, 50, 10, 20, vx=70)  # 3.5 own heights per second: enters at t = 3 s, gone by 5.5 s
# What a small model writes: one sensible anomaly rule and one that describes the normal footage.
INDUCED = {"anomaly_human_activities": ["moving very fast", "an object at the bottom is moving to the left"],
           "anomaly_objects": [], "normal_human_activities": ["2 moving objects"], "normal_objects": ["red objects"]}


def responder(body: dict[str, Any]) -> tuple[str, None]:
    schema = json.dumps(body.get("response_format") or {})
    if "normal_human_activities" in schema:
        return json.dumps(INDUCED), None
    if "broken_rules" in schema:
        return json.dumps({"verdict": "anomaly", "broken_rules": [1], "reason": "An object moves very fast."}), None
    return "ok", None


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    """The real MiniLM: rule matching of structured captions needs real similarities."""
    return TextEmbedder()


@pytest.fixture
def runtime(embedder: TextEmbedder, scripted_openai: ScriptedOpenAI, tmp_path: Path) -> Runtime:
    scripted_openai.responder = responder
    settings = load_settings()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=embedder,
                   checkpoint_path=tmp_path / "checkpoints.sqlite")


@pytest.fixture
def footage(tmp_path: Path) -> dict[str, Path]:
    normal = write_video(tmp_path / "normal.mp4", render(WALKERS, n_frames=80))
    test_images = render(WALKERS, n_frames=30) + [
        image for image in render([*WALKERS, FAST], n_frames=60)[30:]]
    return {"normal": normal, "test": write_video(tmp_path / "test.mp4", test_images)}


def calibrated(runtime: Runtime, footage: dict[str, Path], rules: RuleSet | None = None, **options: Any) -> Any:
    config = CalibrateConfig(proposer=TINY, caption_frames=30, caption_context=4, **options)
    return calibrate([footage["normal"]], scene="cam1", config=config, runtime=runtime, rules=rules)


# Given rules (as `sleuth calibrate --rules` stores them), so detect is tested apart from induction.
SPEED_RULES = RuleSet(scene="cam1", rules=[Rule(text="an object moving very fast", kind="anomaly"),
                                           Rule(text="2 moving objects", kind="normal"),
                                           Rule(text="red objects", kind="normal")])


def test_calibrate_trains_stores_rules_and_demotes_rules_that_flag_normal_footage(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI) -> None:
    result = calibrated(runtime, footage)
    assert Path(result.proposer_checkpoint).is_file() and result.frames == 80
    assert result.rules_version == 1 and result.rules_changed
    assert "moving very fast" in result.anomaly_rules
    # the walker heading left is normal footage: the rule that flags it ("an object at the bottom is moving to
    # the left") is demoted, and loses its screen position
    assert not any("moving to the left" in rule for rule in result.anomaly_rules)
    assert "An object is moving to the left" in result.normal_rules
    assert result.rule_floor < 0.5
    profile = SceneStore(runtime.settings).load("cam1")
    assert profile is not None and profile.rules_version == 1 and profile.rule_floor == result.rule_floor

    again = calibrated(runtime, footage, train_proposer=False)
    assert again.rules_version == 1 and not again.rules_changed  # same rules: no duplicate version
    assert runtime.memory.latest_version("cam1") == 1


def test_detect_finds_the_fast_object_as_an_event_with_times_rules_and_key_frames(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    calls_before = len(scripted_openai.requests)
    report = detect_video(footage["test"], scene="cam1", runtime=runtime,
                          config=VideoDetectConfig(gate_percentile=0))  # caption every frame
    assert len(report.frames) == 60 and report.cost.gated_frames == 60
    assert report.events, "the fast object must become an event"
    event = max(report.events, key=lambda e: e.end_frame - e.start_frame)
    assert event.end_frame >= 33 and event.start_frame <= 55  # overlaps the fast object's frames
    assert event.start_s == pytest.approx(event.start_frame / 10.0)  # the clip plays at 10 fps
    assert "an object moving very fast" in event.broken_rules
    assert event.key_frames and all(index in report.thumbnails for index in event.key_frames)
    assert max(f.score for f in report.frames[:25]) < min(f.score for f in report.frames if f.index == event.peak_frame)
    # LLM calls only for the event explanations (no per-frame calls by default)
    assert report.cost.llm_calls == len(scripted_openai.requests) - calls_before <= 2 * len(report.events)
    assert report.rules_version == 1 and "anomaly: an object moving very fast" in report.rules
    assert report.models["captioner"] == "structured-describer" and report.trace_id


def test_the_detect_graph_runs_on_its_documented_input_with_settings_from_the_run_context(
        runtime: Runtime, footage: dict[str, Path]) -> None:
    """As LangGraph Studio runs it: input {"video", "scene"}, settings as the run's context, output {"report"}."""
    from sleuth.graphs.detect.graph import build_graph
    from sleuth.graphs.detect.state import DetectReport

    calibrated(runtime, footage, rules=SPEED_RULES)
    graph = build_graph(runtime)  # no checkpointer, default settings
    output = graph.invoke({"video": str(footage["test"]), "scene": "cam1"},
                          context={"gate_percentile": 0, "start": 20, "stop": 50})
    assert set(output) == {"report"}
    report = DetectReport.model_validate(output["report"])
    assert [f.index for f in report.frames] == list(range(20, 50)) and report.cost.gated_frames == 30
    assert report.video == str(footage["test"]) and report.scene == "cam1" and report.events
    assert set(report.cost.seconds_by_stage) >= {"check", "score", "caption", "reason", "events"}
    with pytest.raises(SleuthError, match="scene 'lobby' is not calibrated"):  # the graph checks its input itself
        graph.invoke({"video": str(footage["test"]), "scene": "lobby"})
    with pytest.raises(VideoError, match="past the end"):
        graph.invoke({"video": str(footage["test"]), "scene": "cam1"}, context={"start": 500})


def test_with_validation_an_event_the_llm_judges_normal_is_dismissed_in_the_report(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    """HyCoVAD's second stage in the detect graph: the verdict counts, and the report shows it."""
    from sleuth.graphs.detect_captions import DetectConfig
    from sleuth.reports import render_html

    calibrated(runtime, footage, rules=SPEED_RULES)

    def judged_normal(body: dict[str, Any]) -> tuple[str, None]:
        if "broken_rules" in json.dumps(body.get("response_format") or {}):
            return json.dumps({"verdict": "normal", "broken_rules": [], "reason": "An object moves."}), None
        return responder(body)

    scripted_openai.responder = judged_normal
    reasoning = DetectConfig.for_video(validate_events=True)
    report = detect_video(footage["test"], scene="cam1", runtime=runtime,
                          config=VideoDetectConfig(gate_percentile=0, reasoning=reasoning))
    assert report.events == [] and report.dismissed
    dismissed = report.dismissed[0]
    assert dismissed.verdict == "dismissed" and dismissed.reason.startswith("Dismissed: the LLM judged the span's")
    assert dismissed.key_frames and all(index in report.thumbnails for index in dismissed.key_frames)
    inside = [f for f in report.frames if dismissed.start_frame <= f.index <= dismissed.end_frame]
    assert all(not f.anomalous and f.score < report.threshold for f in inside)
    assert any(f.prior_score is not None and f.prior_score > report.threshold for f in inside)
    page = render_html(report)
    assert "Dismissed candidates (" in page and "the LLM dismissed" in page


def test_the_gate_sends_only_suspect_frames_and_neighbours_to_captioning(
        runtime: Runtime, footage: dict[str, Path]) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    report = detect_video(footage["test"], scene="cam1", runtime=runtime,
                          config=VideoDetectConfig(gate_percentile=99.0, gate_context=2))
    gated = [f for f in report.frames if f.gated]
    assert 0 < len(gated) < len(report.frames)
    assert all(f.caption is None for f in report.frames if not f.gated)
    assert all(f.caption for f in gated)
    assert report.gate_threshold > 0


def test_an_interrupted_detect_resumes_without_redoing_finished_stages(
        runtime: Runtime, footage: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    scored: list[int] = []
    proposer = runtime.toolset().proposer("cam1")
    original = type(proposer).scores_from_ssl  # once per chunk of the one streamed pass

    def counting(self: Any, frames: Any, *args: Any) -> Any:
        scored.append(len(frames))
        return original(self, frames, *args)

    monkeypatch.setattr(type(proposer), "scores_from_ssl", counting)

    def stop_at_captions(stage: str, done: int, total: int) -> None:
        if stage == "caption":
            raise KeyboardInterrupt

    config = VideoDetectConfig(gate_percentile=0)
    with pytest.raises(KeyboardInterrupt):
        detect_video(footage["test"], scene="cam1", runtime=runtime, config=config, progress=stop_at_captions)
    assert scored == [60]
    report = detect_video(footage["test"], scene="cam1", runtime=runtime, config=config)
    assert scored == [60], "the resumed run must not score the video again"
    assert len(report.frames) == 60 and report.events


def test_detect_and_calibrate_fail_in_one_line_on_bad_input(runtime: Runtime, footage: dict[str, Path],
                                                            tmp_path: Path) -> None:
    with pytest.raises(SleuthError, match="scene 'lobby' is not calibrated") as caught:
        detect_video(footage["test"], scene="lobby", runtime=runtime)
    assert "sleuth calibrate --scene lobby --video" in caught.value.one_line()
    calibrated(runtime, footage)
    with pytest.raises(VideoError, match="not found|does not exist"):
        detect_video(tmp_path / "missing.mp4", scene="cam1", runtime=runtime)
    with pytest.raises(VideoError):
        calibrate([tmp_path / "missing.mp4"], scene="cam2", runtime=runtime)
    with pytest.raises(SleuthError, match="invalid scene name"):
        calibrate([footage["normal"]], scene="../etc", runtime=runtime)
