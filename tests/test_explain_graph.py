"""The explain graph (Holmes-VAU): sampling, describing, clip/event/video judgments, fallbacks, resume.

The LLM is a scripted endpoint (control flow only); the last test runs the real packaged model.
The video is a small synthetic clip (tests/synthetic_video.py): 60 frames at 10 fps, so frame i
is at i / 10 s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.detect.state import VideoEvent
from sleuth.graphs.explain import ExplainConfig, explain_video
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import Gateway
from sleuth.tools.frames import Frame
from sleuth.tools.proposer.proposer import ProposalScores
from sleuth.tools.toolset import open_tools

from tests.conftest import HashEmbedder, ScriptedOpenAI
from tests.synthetic_video import two_movers, write_video

N_FRAMES = 60
PEAK = range(40, 50)  # frames whose anomaly score is high
SCORES = [0.95 if i in PEAK else 0.05 for i in range(N_FRAMES)]
ANSWER = {"description": "Something crosses the scene.", "analysis": "It matches no rule of the scene."}


class RecordingCaptioner:
    """Captions that name their frame, and a record of which frames each call saw."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        self.calls.append([frame.index for frame in frames])
        return [f"caption of frame {frame.index}" for frame in frames]


class FakeProposer:
    """Scores frames by a fixed z-score profile (threshold 2): high inside PEAK."""

    def score(self, frames: Sequence[Frame]) -> ProposalScores:
        z = np.array([4.0 if frame.index in PEAK else 0.0 for frame in frames])
        return ProposalScores([f.index for f in frames], [f.time_s for f in frames], z, z, [[] for _ in frames], 2.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("explain") / "clip.mp4", two_movers(N_FRAMES))


@pytest.fixture
def scripted(scripted_openai: ScriptedOpenAI) -> ScriptedOpenAI:
    scripted_openai.replies = [json.dumps(ANSWER)]
    return scripted_openai


def make_runtime(tmp_path: Path, **tools: object) -> Runtime:
    settings = load_settings()
    embedder = HashEmbedder()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=embedder,
                   tools=open_tools(settings, embedder=embedder, **tools),
                   checkpoint_path=tmp_path / "checkpoints.sqlite")


def prompt_text(request: dict) -> str:
    parts = []
    for message in request["messages"]:
        content = message["content"]
        parts.extend([content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"])
    return "\n".join(parts)


def event(event_id: int, first: int, last: int, **extra: object) -> VideoEvent:
    return VideoEvent(id=event_id, start_frame=first, end_frame=last, start_s=first / 10, end_s=last / 10,
                      peak_frame=(first + last) // 2, peak_s=(first + last) / 20, peak_score=0.9, **extra)


def test_frames_concentrate_on_high_scores_and_each_clip_is_one_call(clip: Path, scripted: ScriptedOpenAI,
                                                                      tmp_path: Path) -> None:
    captioner = RecordingCaptioner()
    config = ExplainConfig(frames=8, clip_size=4, caption_context=4)
    result = explain_video(clip, scene="cam1", scores=SCORES, config=config,
                           runtime=make_runtime(tmp_path, captioner=captioner))
    assert len(result.sampled_frames) == 8 and result.sampled_frames == sorted(result.sampled_frames)
    assert sum(index in PEAK for index in result.sampled_frames) >= 5  # 10 of 60 frames hold most samples
    assert len(scripted.requests) == 2 + 1 == result.llm_calls  # two clips and the video
    assert result.source == "captions" and result.model == "openai/scripted"
    assert [clip_.frames for clip_ in result.clips] == [result.sampled_frames[:4], result.sampled_frames[4:]]
    for judgment, request in zip(result.clips, scripted.requests, strict=False):
        assert judgment.level == "clip" and judgment.description == ANSWER["description"]
        # no detector's events: the verdict is the scores' (a frame at or above the threshold 0.5)
        assert judgment.anomalous == (max(SCORES[index] for index in judgment.frames) >= 0.5)
        assert f"{max(SCORES[index] for index in judgment.frames):.2f}" in judgment.judgment
        assert (judgment.start_s, judgment.end_s) == pytest.approx((judgment.frames[0] / 10, judgment.frames[-1] / 10))
        text = prompt_text(request)
        for index in judgment.frames:  # frame numbers, times and the frame's own caption reach the model
            assert f"frame {index} at {index / 10:.2f} s" in text
            assert f"caption of frame {index}" in text
    # each sampled frame was captioned among its neighbours, and each call saw consecutive frames
    for call in captioner.calls:
        assert call == list(range(call[0], call[-1] + 1))
    seen = {index for call in captioner.calls for index in call}
    for index in result.sampled_frames:
        assert set(range(max(0, index - 4), min(N_FRAMES, index + 5))) <= seen
    assert len(seen) == sum(len(call) for call in captioner.calls)  # no frame captioned twice
    video = result.video_judgment
    assert video is not None and video.level == "video" and video.frames == result.sampled_frames
    assert (video.start_s, video.end_s) == pytest.approx((0.0, (N_FRAMES - 1) / 10))
    assert "Something crosses the scene." in prompt_text(scripted.requests[-1])  # the video call reads the clips
    assert video.anomalous and "0.95" in video.judgment


def test_the_structured_captioner_sees_motion_only_with_context(clip: Path, scripted: ScriptedOpenAI,
                                                                 tmp_path: Path) -> None:
    scores = [1.0 if i == 8 else 0.0 for i in range(N_FRAMES)]  # the fast red object is on screen at 0.8 s
    for context, moving in ((4, True), (0, False)):
        scripted.requests.clear()
        explain_video(clip, scene="cam1", scores=scores, config=ExplainConfig(frames=1, caption_context=context),
                      runtime=make_runtime(tmp_path))
        assert ("moving fast" in prompt_text(scripted.requests[0])) is moving


def test_events_are_judged_with_their_id_detector_findings_and_rules(clip: Path, scripted: ScriptedOpenAI,
                                                                     tmp_path: Path) -> None:
    events = [event(7, 40, 49, broken_rules=["Riding a bicycle"], reason="a cyclist on the path"),
              event(8, 5, 9)]
    rules = ["anomaly: Riding a bicycle", "normal: Walking on the pathway"]
    config = ExplainConfig(frames=8, clip_size=4, event_frames=4, max_events=1)
    result = explain_video(clip, scene="cam1", scores=SCORES, events=events, rules=rules, config=config,
                           runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()))
    assert len(scripted.requests) == result.llm_calls == 2 + 1 + 1  # clips, the first event, the video
    (judged,) = result.events
    assert judged.level == "event" and judged.event_id == 7
    assert (judged.start_s, judged.end_s) == (4.0, 4.9)
    assert len(judged.frames) == 4 and all(index in PEAK for index in judged.frames)
    text = prompt_text(scripted.requests[2])
    assert "Event 7" in text and "a cyclist on the path" in text and "Riding a bicycle" in text
    assert all(f"frame {index} at {index / 10:.2f} s" in text for index in judged.frames)
    assert all("Walking on the pathway" in prompt_text(request) for request in scripted.requests)
    assert "event 7" in prompt_text(scripted.requests[-1])


def test_invalid_model_answers_become_fallback_judgments(clip: Path, scripted: ScriptedOpenAI,
                                                         tmp_path: Path) -> None:
    scripted.replies = ["Sure! The clip shows"]
    config = ExplainConfig(frames=8, clip_size=2, event_frames=4, tau=10.0)  # near-uniform: clips outside the event
    result = explain_video(clip, scene="cam1", scores=SCORES, events=[event(1, 40, 49)], config=config,
                           runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()))
    judgments = [*result.clips, *result.events, result.video_judgment]
    assert len(judgments) == 6 and all(j is not None and "invalid" in j.analysis for j in judgments)
    assert len(scripted.requests) == result.llm_calls == 2 * 6  # each answer was retried once
    # verdicts come from the scores and the detector's event whatever the model wrote
    overlaps = [clip_.start_s <= 4.9 and clip_.end_s >= 4.0 for clip_ in result.clips]
    assert [clip_.anomalous for clip_ in result.clips] == overlaps and any(overlaps) and not all(overlaps)
    assert result.events[0].anomalous and result.events[0].event_id == 1
    assert result.video_judgment is not None and result.video_judgment.anomalous
    assert "caption of frame" in result.clips[0].description  # the captions still tell what was seen


def test_without_scores_the_scene_proposer_scores_the_frames(clip: Path, scripted: ScriptedOpenAI,
                                                             tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, captioner=RecordingCaptioner(), proposer=lambda scene: FakeProposer())
    result = explain_video(clip, scene="cam1", config=ExplainConfig(frames=8, clip_size=8), runtime=runtime)
    assert sum(index in PEAK for index in result.sampled_frames) >= 5
    assert "anomaly score 0.90" in prompt_text(scripted.requests[0])  # z 4, threshold 2, median 0 -> 0.90


def test_the_graph_runs_on_its_documented_input_with_settings_from_the_run_context(
        clip: Path, scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    """As LangGraph Studio runs it: input {"video", "scene"} (no mode or bookkeeping keys), settings as
    the run's context, output {"explanation"}."""
    from sleuth.graphs.explain.graph import build_graph
    from sleuth.graphs.explain.state import Explanation

    runtime = make_runtime(tmp_path, captioner=RecordingCaptioner(), proposer=lambda scene: FakeProposer())
    graph = build_graph(runtime)
    output = graph.invoke({"video": str(clip), "scene": "cam1"}, context={"frames": 4, "clip_size": 4})
    assert set(output) == {"explanation"}
    result = Explanation.model_validate(output["explanation"])
    assert len(result.sampled_frames) == 4 and len(result.clips) == 1 and result.source == "captions"
    assert result.video_judgment is not None and result.video_judgment.anomalous  # the proposer's peak
    event = VideoEvent(id=3, start_frame=40, end_frame=49, start_s=4.0, end_s=4.9, peak_frame=45, peak_s=4.5,
                       peak_score=0.95)
    one = Explanation.model_validate(graph.invoke({"video": str(clip), "scene": "cam1", "scores": SCORES,
                                                   "events": [event.model_dump()], "event_id": 3},
                                                  context={"frames": 4})["explanation"])
    assert [judgment.event_id for judgment in one.events] == [3]
    with pytest.raises(SleuthError, match="no event 7"):
        graph.invoke({"video": str(clip), "scene": "cam1", "scores": SCORES, "events": [event.model_dump()],
                      "event_id": 7})


def test_a_scene_without_proposer_and_no_scores_is_a_clear_error(clip: Path, scripted: ScriptedOpenAI,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(SleuthError, match="no proposer for scene 'nowhere'") as caught:
        explain_video(clip, scene="nowhere", runtime=make_runtime(tmp_path))
    assert "sleuth calibrate" in str(caught.value) and "\n" not in str(caught.value)
    assert not scripted.requests


def test_scores_must_match_the_frames_read(clip: Path, scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    with pytest.raises(SleuthError, match="30 anomaly scores for 60 frames"):
        explain_video(clip, scene="cam1", scores=[0.1] * 30, runtime=make_runtime(tmp_path))


def test_vlm_gets_the_frames_as_images(clip: Path, scripted: ScriptedOpenAI, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/scripted-vlm")
    monkeypatch.setenv("SLEUTH_VLM__API_BASE", scripted.url)
    monkeypatch.setenv("SLEUTH_VLM__NUM_RETRIES", "0")
    captioner = RecordingCaptioner()
    result = explain_video(clip, scene="cam1", scores=SCORES, config=ExplainConfig(frames=4, clip_size=2),
                           runtime=make_runtime(tmp_path, captioner=captioner))
    assert result.source == "vlm" and result.model == "openai/scripted-vlm" and not captioner.calls
    clip_requests, video_request = scripted.requests[:2], scripted.requests[2]
    for judgment, request in zip(result.clips, clip_requests, strict=True):
        parts = request["messages"][-1]["content"]
        images = [part for part in parts if part["type"] == "image_url"]
        assert len(images) == 2 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert f"image 1: frame {judgment.frames[0]} at {judgment.frames[0] / 10:.2f} s" in prompt_text(request)
    assert isinstance(video_request["messages"][-1]["content"], str)  # the video level is text only


def test_an_interrupted_run_resumes_without_repeating_finished_clips(clip: Path, scripted: ScriptedOpenAI,
                                                                     tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    raised: list[tuple[str, int]] = []

    def stop_once(stage: str, done: int, total: int) -> None:
        if stage == "clips" and done == 1 and not raised:  # before the second clip: the first is saved
            raised.append((stage, done))
            raise Stop

    config = ExplainConfig(frames=12, clip_size=4)
    options = {"scene": "cam1", "scores": SCORES, "config": config, "thread_id": "t1"}
    with pytest.raises(Stop):
        explain_video(clip, runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()), progress=stop_once,
                      **options)
    assert len(scripted.requests) == 1
    resumed = explain_video(clip, runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()), progress=stop_once,
                            **options)
    prompts = [prompt_text(request) for request in scripted.requests]
    assert len(prompts) == 3 + 1 and len(set(prompts)) == 4  # every clip judged once over both runs
    assert len(resumed.clips) == 3 and resumed.llm_calls == 4
    again = explain_video(clip, runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()), **options)
    assert len(scripted.requests) == 4 and again == resumed  # a finished thread returns its stored result


@pytest.mark.slow
def test_the_packaged_llm_writes_a_valid_explanation(clip: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_LLM__TIMEOUT_S", "600")  # a busy shared CPU can slow llama.cpp tenfold
    runtime = Runtime.from_settings()
    runtime.checkpoint_path = tmp_path / "checkpoints.sqlite"
    try:
        result = explain_video(clip, scene="plaza", scores=SCORES, config=ExplainConfig(frames=4, clip_size=4),
                               rules=["anomaly: Objects moving fast", "normal: Walking slowly"], runtime=runtime)
    finally:
        runtime.close()
    assert len(result.clips) == 1 and not result.events and result.video_judgment is not None
    assert result.llm_calls >= 2 and result.model
    for judgment in (*result.clips, result.video_judgment):
        assert judgment.judgment.strip() and judgment.description.strip() and judgment.analysis.strip()
        assert "answer was invalid" not in judgment.analysis  # the grammar-constrained answer validated
        assert judgment.description.isascii() and judgment.analysis.isascii()  # plain English only


def test_the_cli_explains_a_detect_report(clip: Path, scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    import typer
    from sleuth.cli.explain import explain
    from sleuth.graphs.detect.state import DetectReport, FrameScore
    from sleuth.graphs.explain.state import Explanation
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(explain)
    report = DetectReport(video=str(clip), scene="cam1", threshold=0.5, gate_threshold=1.0,
                          rules=["anomaly: Riding a bicycle"], events=[event(7, 40, 49)],
                          frames=[FrameScore(index=i, time_s=i / 10, score=s, proposer=s, gated=False,
                                             anomalous=s > 0.5) for i, s in enumerate(SCORES)])
    (tmp_path / "result.json").write_text(report.model_dump_json())
    out = tmp_path / "explanation.json"
    result = CliRunner().invoke(app, [str(clip), "--scene", "cam1", "--frames", "8", "--from",
                                      str(tmp_path / "result.json"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("video 00:00.0-00:05.9 ANOMALOUS: 1 event(s) in 0.0-5.9 s: event 7 at 4.0-4.9 s.")
    assert "clips:" in lines and "events:" in lines
    assert any(line.startswith("  #7 00:04.0-00:04.9") for line in lines)
    saved = Explanation.model_validate_json(out.read_text())
    assert len(saved.clips) == 2 and saved.events[0].event_id == 7
    assert "Riding a bicycle" in prompt_text(scripted.requests[0])  # the report's rules reach the prompts

    missing = CliRunner().invoke(app, [str(clip), "--scene", "cam1", "--from", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "error:" in missing.stderr and "none.json" in missing.stderr


def test_the_cli_explains_one_event_of_a_report(clip: Path, scripted: ScriptedOpenAI, tmp_path: Path) -> None:
    import typer
    from sleuth.cli.explain import explain
    from sleuth.graphs.detect.state import DetectReport, FrameScore
    from sleuth.graphs.explain.state import Explanation
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(explain)
    report = DetectReport(video=str(clip), scene="cam1", threshold=0.5, gate_threshold=1.0,
                          events=[event(1, 10, 19), event(2, 40, 49)],
                          frames=[FrameScore(index=i, time_s=i / 10, score=s, proposer=s, gated=False,
                                             anomalous=s > 0.5) for i, s in enumerate(SCORES)])
    (tmp_path / "result.json").write_text(report.model_dump_json())
    out = tmp_path / "one.json"
    args = [str(clip), "--scene", "cam1", "--frames", "4", "--from", str(tmp_path / "result.json")]
    result = CliRunner().invoke(app, [*args, "--event", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert [e.event_id for e in Explanation.model_validate_json(out.read_text()).events] == [2]
    unknown = CliRunner().invoke(app, [*args, "--event", "9"])
    assert unknown.exit_code == 2 and "no event 9 (events: 1, 2)" in unknown.stderr


def test_the_verdict_is_the_scores_and_unsupported_prose_is_removed(clip: Path, scripted: ScriptedOpenAI,
                                                                    tmp_path: Path) -> None:
    """The failure a user saw: every frame under the threshold, the model calls it unusual, repeats
    itself and writes a word that is not English. Verdicts stay 'normal' and what the model made up
    is removed (and listed)."""
    low = [0.3 if i in PEAK else 0.05 for i in range(N_FRAMES)]  # nothing reaches the threshold 0.5
    scripted.replies = [json.dumps({
        "description": "Something crosses the scene. Something crosses the scene. A cyclist races past.",
        "analysis": "This is unusual for the scene, so the clip is anomalous."})]
    result = explain_video(clip, scene="cam1", scores=low, events=[], config=ExplainConfig(frames=4, clip_size=4),
                           runtime=make_runtime(tmp_path, captioner=RecordingCaptioner()))
    for judgment in (*result.clips, result.video_judgment):
        assert judgment is not None and not judgment.anomalous
        assert judgment.description == "Something crosses the scene."
        assert "unusual" not in judgment.analysis and "cyclist" not in judgment.description
        assert judgment.analysis  # rebuilt from the scores when nothing the model wrote survives
        reasons = " ".join(judgment.removed)
        assert "repeats an earlier sentence" in reasons and "object 'cyclist'" in reasons
        assert "scores call normal" in reasons
    assert "NORMAL" in prompt_text(scripted.requests[0])  # the model is told the verdict it may not contradict
