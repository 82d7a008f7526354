"""The investigate agent: tool calls, confirmations with interrupt(), persistent threads, ``sleuth chat``.

The LLM is a scripted endpoint (control flow only) that answers from the conversation so far; the
tools are real (frame reader, rule memory in Qdrant local mode, SQLite checkpointer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.investigate import Investigator, first_tool_call
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import Gateway
from sleuth.tools.toolset import InProcessTools

from tests.conftest import HashEmbedder, ScriptedOpenAI
from tests.synthetic_video import RED, Mover, render, write_video


def _call(name: str, **arguments: Any) -> str:
    return json.dumps({"name": name, "arguments": arguments})


class Script:
    """Answers in order per conversation stage: the first reply when the last message is the
    person's, the second after a tool result, ..."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)

    def __call__(self, body: dict[str, Any]) -> tuple[str, None]:
        messages = body["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        rounds = sum(1 for m in messages[last_user:] if m["role"] == "tool")
        return self.replies[min(rounds, len(self.replies) - 1)], None


@pytest.fixture
def setup(scripted_openai: ScriptedOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    videos = tmp_path / "videos"
    videos.mkdir()
    video = write_video(videos / "gate.mp4", render([Mover(0, 10, 16, 40, vx=30.0, colour=RED)], n_frames=30))
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLEUTH_DATA_DIRS", json.dumps([str(videos)]))
    settings = load_settings()
    embedder = HashEmbedder()
    runtime = Runtime(settings=settings, gateway=Gateway(settings), embedder=embedder,
                      tools=InProcessTools(settings, embedder=embedder),
                      checkpoint_path=tmp_path / "data" / "checkpoints.sqlite")
    runtime.memory.save(RuleSet(scene="gate", rules=[Rule(text="Walking on the path", kind="normal"),
                                                     Rule(text="Riding a bicycle", kind="anomaly")]))
    yield {"runtime": runtime, "video": video, "script": scripted_openai, "tmp": tmp_path}
    runtime.close()


def _events(events: Any) -> list[Any]:
    return list(events)


def test_a_tool_call_runs_the_tool_and_the_answer_streams_with_its_files(setup: dict[str, Any]) -> None:
    setup["script"].responder = Script(_call("show_clip", video=str(setup["video"]), start_s=0.0, end_s=2.0),
                                       "The sheet shows the red walker crossing; see the image.")
    agent = Investigator(setup["runtime"], context="Scenes: gate")
    events = _events(agent.send("t1", "show me the first two seconds of gate.mp4"))
    kinds = [event.type for event in events]
    assert kinds[0] == "tool_start" and "tool_end" in kinds and kinds[-1] == "answer"
    assert "token" in kinds  # the answer streamed before the final event
    tool_end = next(event for event in events if event.type == "tool_end")
    image = Path(tool_end.files[0])
    assert image.suffix == ".jpg" and image.stat().st_size > 500 and "frame 11 (0:01.1)" in (tool_end.result or "")
    answer = events[-1]
    assert answer.text.startswith("The sheet shows") and answer.files == tool_end.files
    assert "".join(event.text for event in events if event.type == "token") == answer.text
    # the model saw the tool's result, with the frame numbers and the file, on its second call
    second = setup["script"].requests[-1]["messages"]
    assert any(m["role"] == "tool" and "frame 11" in m["content"] and str(image) in m["content"] for m in second)


def test_explain_explains_detects_scores_so_its_verdict_agrees_with_the_plot(
        setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.graphs import explain as explain_graph
    from sleuth.graphs.investigate import tools
    from sleuth.records import Cost, DetectReport, Explanation, FrameScore, Judgment, VideoEvent

    event = VideoEvent(id=1, start_frame=10, end_frame=12, start_s=1.0, end_s=1.2, peak_frame=11, peak_s=1.1,
                       peak_score=0.7)
    report = DetectReport(video=str(setup["video"]), scene="gate", fps=None, threshold=0.5, gate_threshold=0.0,
                          rules_version=1, rules=["anomaly: Riding a bicycle"], events=[event],
                          frames=[FrameScore(index=i, time_s=i / 10, score=0.7 if 10 <= i <= 12 else 0.1, proposer=0.9,
                                             gated=True, anomalous=10 <= i <= 12) for i in range(30)],
                          cost=Cost(frames=30, gated_frames=30, llm_calls=0, prompt_tokens=0, completion_tokens=0,
                                    seconds=1.0), created="2026-12-07T00:00:00+00:00", trace_id="0")
    detected = []
    monkeypatch.setattr(tools, "_run_detect", lambda ctx, video, scene, start, stop: (
        detected.append((video.name, scene, start, stop)) or report, tools.ToolOutput("detect", ["plot.png"])))
    seen: dict[str, Any] = {}

    def explain_video(video: Any, **kwargs: Any) -> Explanation:
        seen.update(kwargs)
        verdict = Judgment(level="video", start_s=0.0, end_s=2.9, anomalous=True, judgment="1 event(s) in 0.0-2.9 s.",
                           description="A red walker crosses.", analysis="")
        return Explanation(video=str(video), scene="gate", sampled_frames=[11], source="captions",
                           video_judgment=verdict)

    monkeypatch.setattr(explain_graph, "explain_video", explain_video)
    ctx = tools.ToolContext(setup["runtime"], setup["tmp"] / "files")
    output = tools.explain(ctx, tools.ExplainArgs(video=str(setup["video"]), scene="gate"))
    assert detected == [("gate.mp4", "gate", 0, None)]  # no detect in the conversation yet: it runs first
    assert seen["scores"] == [frame.score for frame in report.frames] and seen["events"] == [event]
    assert seen["config"].threshold == 0.5 and seen["stop"] == 30 and output.files == ["plot.png"]
    assert output.lead.startswith("Explain gate.mp4 0:00.0-0:02.9, scene gate: anomalous.")
    with pytest.raises(SleuthError, match="no detect result"):  # an event number needs a detect to point into
        tools.explain(tools.ToolContext(setup["runtime"], setup["tmp"] / "other"),
                      tools.ExplainArgs(video=str(setup["video"]), scene="gate", event=1))


def test_a_state_changing_tool_waits_for_approval_and_declining_does_not_run_it(setup: dict[str, Any]) -> None:
    runtime = setup["runtime"]
    setup["script"].responder = Script(_call("propose_rule_edit", scene="gate", add_anomaly=["Climbing the fence"]),
                                       "Not saved, as you asked.")
    agent = Investigator(runtime, context="Scenes: gate")
    events = _events(agent.send("t2", "add a rule: climbing the fence is an anomaly"))
    assert events[-1].type == "interrupt" and events[-1].tool == "propose_rule_edit"
    assert "Climbing the fence" in events[-1].text and agent.pending("t2") is not None
    assert runtime.memory.latest_version("gate") == 1  # nothing saved yet
    refused = _events(agent.send("t2", "hello?"))
    assert refused[-1].type == "error" and "confirmation" in refused[-1].text
    declined = _events(agent.resume("t2", approved=False))
    assert declined[-1].type == "answer" and declined[-1].text == "Not saved, as you asked."
    assert runtime.memory.latest_version("gate") == 1 and agent.pending("t2") is None
    assert not any(event.type == "tool_start" for event in declined)


def test_approving_runs_the_tool_once_and_the_thread_survives_a_new_process(setup: dict[str, Any]) -> None:
    runtime = setup["runtime"]
    setup["script"].responder = Script(_call("propose_rule_edit", scene="gate", add_anomaly=["Climbing the fence"]),
                                       "Saved rules v2 of gate: + anomaly: Climbing the fence.")
    agent = Investigator(runtime, context="Scenes: gate")
    assert _events(agent.send("t3", "add the fence rule"))[-1].type == "interrupt"
    approved = _events(agent.resume("t3", approved=True))
    assert [e.type for e in approved if e.type.startswith("tool")] == ["tool_start", "tool_end"]
    assert approved[-1].type == "answer" and runtime.memory.latest_version("gate") == 2
    assert "Climbing the fence" in [rule.text for rule in runtime.memory.latest("gate").rules]  # type: ignore[union-attr]
    # a new Investigator over the same SQLite file (a later `sleuth chat --thread t3`) sees the thread
    again = Investigator(runtime, context="Scenes: gate")
    history = again.history("t3")
    assert [m["role"] for m in history] == ["user", "tool", "assistant"]
    assert history[0]["content"] == "add the fence rule" and "saved rules v2" in history[1]["content"]


def test_bad_paths_and_bad_arguments_go_back_to_the_model_as_errors(setup: dict[str, Any]) -> None:
    outside = setup["tmp"] / "secret.mp4"
    outside.write_bytes(b"x")
    setup["script"].responder = Script(_call("show_frame", video=str(outside), time_s=0),
                                       _call("show_frame", video=str(setup["video"]), time_s="soon"),
                                       "Sorry, I cannot read that file.")
    events = _events(Investigator(setup["runtime"], context="").send("t4", "show secret.mp4"))
    results = [event.result for event in events if event.type == "tool_end"]
    assert results and "outside the data folders" in results[0]
    messages = setup["script"].requests[-1]["messages"]
    assert any(m["role"] == "tool" and "bad arguments for show_frame: time_s" in m["content"] for m in messages)
    assert events[-1].type == "answer" and events[-1].text == "Sorry, I cannot read that file."


def test_a_repeated_call_makes_the_model_answer_and_an_empty_answer_shows_the_tool_results(
        setup: dict[str, Any]) -> None:
    call = _call("list_rules", scene="gate")
    setup["script"].responder = Script(call, call, call)  # a small model that loops, then says nothing useful
    events = _events(Investigator(setup["runtime"], context="").send("t5", "which rule versions does gate have?"))
    assert sum(event.type == "tool_start" for event in events) == 1
    answer = events[-1]
    assert answer.type == "answer" and "v1" in answer.text and "list_rules" in answer.text


def test_a_long_tool_runs_once_a_turn_on_a_video_whatever_its_other_arguments() -> None:
    from sleuth.graphs.investigate.graph import _call_key

    first = _call_key("explain", json.dumps({"video": "a.mp4", "scene": "gate"}))
    assert _call_key("explain", json.dumps({"video": "a.mp4", "scene": "gate", "event": 2})) == first
    assert _call_key("explain", json.dumps({"video": "b.mp4", "scene": "gate"})) != first
    assert _call_key("show_frame", json.dumps({"video": "a.mp4", "time_s": 1})) != _call_key(
        "show_frame", json.dumps({"video": "a.mp4", "time_s": 2}))  # quick tools: every argument counts


def test_first_tool_call_reports_the_choice_without_running_it(setup: dict[str, Any]) -> None:
    setup["script"].responder = Script(_call("search", query="a man running", gallery="campus", top_k=5))
    name, arguments, ttft, seconds = first_tool_call("find a man running", runtime=setup["runtime"],
                                                     context="Galleries: campus")
    assert name == "search" and arguments == {"query": "a man running", "gallery": "campus", "top_k": 5}
    assert ttft is not None and seconds >= ttft
    tools = {tool["function"]["name"] for tool in setup["script"].requests[0]["tools"]}
    assert {"detect", "explain", "search", "calibrate", "propose_rule_edit", "show_frame", "summarise_range"} <= tools


def test_cli_chat_streams_asks_and_resumes(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    setup["runtime"].close()  # the CLI opens the rule memory itself
    embedder = HashEmbedder()
    monkeypatch.setattr("sleuth.graphs.runtime.open_tools",
                        lambda settings, **_: InProcessTools(settings, embedder=embedder))
    setup["script"].responder = Script(_call("propose_rule_edit", scene="gate", add_normal=["Standing by the gate"]),
                                       "Saved v2.")
    result = CliRunner().invoke(app, ["chat", "add a normal rule", "--thread", "cli1"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "Run propose_rule_edit(" in result.output and "→ propose_rule_edit" in result.output
    assert "sleuth> Saved v2." in result.output and "thread cli1" in result.output


@pytest.fixture
def postgres_url() -> str:
    """A fresh database on the machine's Debian Postgres cluster (started when it is down)."""
    import shutil
    import subprocess
    import uuid

    if not shutil.which("pg_ctlcluster") or not shutil.which("pg_lsclusters"):
        pytest.skip("no Debian Postgres here (apt-get install postgresql)")
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()
    if len(clusters) < 4:
        pytest.skip("no Postgres cluster here")
    version, name, port, status = clusters[:4]
    if status != "online":
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True)
    database = f"sleuth_test_{uuid.uuid4().hex[:8]}"

    def psql(sql: str) -> None:  # as the cluster's superuser, SQL on stdin (no shell quoting)
        subprocess.run(["su", "postgres", "-c", f"psql -q -v ON_ERROR_STOP=1 -p {port}"], input=sql, text=True,
                       check=True, capture_output=True)

    psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sleuth_test') THEN "
         "CREATE ROLE sleuth_test LOGIN PASSWORD 'sleuth_test'; END IF; END $$;\n"
         f"CREATE DATABASE {database} OWNER sleuth_test;\n")
    yield f"postgresql://sleuth_test:sleuth_test@127.0.0.1:{port}/{database}"
    psql(f"DROP DATABASE {database} WITH (FORCE);\n")


@pytest.mark.slow
def test_threads_and_pending_confirmations_persist_in_postgres(setup: dict[str, Any], postgres_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_CHECKPOINT_URL", postgres_url)
    settings = load_settings()
    setup["script"].responder = Script(_call("propose_rule_edit", scene="gate", add_anomaly=["Climbing the fence"]),
                                       "Saved.")
    first = Runtime(settings=settings, gateway=Gateway(settings), embedder=setup["runtime"].embedder,
                    tools=setup["runtime"].tools, checkpoint_path=setup["tmp"] / "unused.sqlite")
    first._memory = setup["runtime"].memory
    assert type(first.checkpointer).__name__ == "PostgresSaver"
    assert list(Investigator(first, context="").send("pg1", "add the fence rule"))[-1].type == "interrupt"
    # a second runtime (another process, another connection) finds the thread and its pending question
    second = Runtime(settings=settings, gateway=Gateway(settings), embedder=setup["runtime"].embedder,
                     tools=setup["runtime"].tools, checkpoint_path=setup["tmp"] / "unused.sqlite")
    second._memory = setup["runtime"].memory
    again = Investigator(second, context="")
    assert again.pending("pg1") is not None and again.pending("pg1").tool == "propose_rule_edit"  # type: ignore[union-attr]
    assert list(again.resume("pg1", approved=True))[-1].text == "Saved."
    assert [m["role"] for m in again.history("pg1")] == ["user", "tool", "assistant"]
    assert not (setup["tmp"] / "unused.sqlite").exists()


def test_an_unreachable_postgres_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sleuth.errors import ConfigError

    monkeypatch.setenv("SLEUTH_CHECKPOINT_URL", "postgresql://u:secret@127.0.0.1:1/db")
    settings = load_settings()
    runtime = Runtime(settings=settings, gateway=Gateway(settings), embedder=HashEmbedder(),
                      checkpoint_path=tmp_path / "c.sqlite")
    with pytest.raises(ConfigError, match="cannot connect to Postgres at 127.0.0.1:1/db") as caught:
        _ = runtime.checkpointer
    assert "secret" not in caught.value.one_line()


def test_a_looping_answer_is_stopped_and_shown_once(setup: dict[str, Any]) -> None:
    loop = "There is nothing unusual here. " + "The video was shot at 40 seconds, which is the start. " * 12
    setup["script"].responder = Script(loop)
    agent = Investigator(setup["runtime"], context="Scenes: gate")
    events = _events(agent.send("t1", "what is unusual?"))
    answer = events[-1]
    assert answer.type == "answer"
    assert answer.text == "There is nothing unusual here. The video was shot at 40 seconds, which is the start."
    assert "".join(event.text for event in events if event.type == "token").strip() == answer.text
    records = setup["runtime"].gateway.usage.records
    assert records[-1].finish_reason == "stopped"  # the model was stopped, and the call still counted
