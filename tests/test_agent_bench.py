"""The agent tool-choice benchmark: its scoring rules, its questions file and the runner (scripted agent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from sleuth.cli.eval_agent import eval_agent
from sleuth.config import Settings
from sleuth.errors import EndpointError, StructuredOutputError
from sleuth.evals.agent_bench import (
    QUESTIONS,
    TOOL_ARGUMENTS,
    AgentQuestion,
    ArgCheck,
    QuestionsError,
    check_argument,
    latency,
    load_questions,
    run_agent_benchmark,
    score_call,
)
from typer.testing import CliRunner


def question(tool: str | None, **args: dict[str, Any]) -> AgentQuestion:
    return AgentQuestion(id="q", question="?", tool=tool, args={k: ArgCheck(**v) for k, v in args.items()})


# -- scoring rules -------------------------------------------------------------------------------

def test_exact_text_ignores_case_and_surrounding_space() -> None:
    check = ArgCheck(check="exact", value="Campus")
    assert check_argument("scene", check, {"scene": "  campus "}) is None
    assert check_argument("scene", check, {"scene": "CAMPUS"}) is None
    assert "is not 'Campus'" in (check_argument("scene", check, {"scene": "campus-2"}) or "")


def test_exact_numbers_within_the_tolerance_including_numeric_strings() -> None:
    check = ArgCheck(check="exact", value=80, tolerance=1.0)
    assert check_argument("start_s", check, {"start_s": 80.0}) is None
    assert check_argument("start_s", check, {"start_s": 80.9}) is None
    assert check_argument("start_s", check, {"start_s": "79.5"}) is None  # the tool's pydantic model accepts it
    assert check_argument("start_s", check, {"start_s": 81.5}) == "start_s=81.5 is not 80 within 1"
    assert check_argument("start_s", check, {"start_s": "1:20"}) is not None  # not a number the tool accepts
    strict = ArgCheck(check="exact", value=2)
    assert check_argument("event", strict, {"event": 2}) is None
    assert check_argument("event", strict, {"event": 3}) is not None


def test_contains_finds_the_file_name_inside_a_path() -> None:
    check = ArgCheck(check="contains", value="vtest.avi")
    assert check_argument("video", check, {"video": "data/videos/VTEST.avi"}) is None
    assert "does not contain" in (check_argument("video", check, {"video": "data/videos/ped2.mp4"}) or "")
    # a list argument (rule texts) passes when one item does
    rule = ArgCheck(check="contains", value="skateboard")
    assert check_argument("add_anomaly", rule, {"add_anomaly": ["a car", "Riding a Skateboard"]}) is None
    assert check_argument("add_anomaly", rule, {"add_anomaly": ["a car"]}) is not None


def test_alternatives_any_and_missing_arguments() -> None:
    one_of = ArgCheck(check="contains", value=["bicycle", "bike"])
    assert check_argument("query", one_of, {"query": "man on a bike"}) is None
    assert check_argument("query", one_of, {"query": "man walking"}) is not None
    anything = ArgCheck(check="any")
    assert check_argument("query", anything, {"query": "x"}) is None
    for call in ({}, {"query": None}, {"query": "  "}, {"query": []}):
        assert check_argument("query", anything, call) == "query missing"
        assert check_argument("query", one_of, call) == "query missing"


def test_optional_argument_may_be_left_out_but_not_be_wrong() -> None:
    check = ArgCheck(check="exact", value=0, tolerance=1.0, optional=True)
    assert check_argument("start_s", check, {}) is None
    assert check_argument("start_s", check, {"start_s": 0.5}) is None
    assert check_argument("start_s", check, {"start_s": 30}) is not None


def test_score_needs_the_right_tool_and_every_checked_argument() -> None:
    q = question("show_clip", video={"check": "contains", "value": "vtest.avi"},
                 start_s={"check": "exact", "value": 10, "tolerance": 1}, end_s={"check": "exact", "value": 20,
                                                                                 "tolerance": 1})
    right = {"video": "data/videos/vtest.avi", "start_s": 10, "end_s": 20, "extra": "ignored"}
    assert score_call(q, "show_clip", right).args_ok
    wrong_end = score_call(q, "show_clip", {**right, "end_s": 25})
    assert wrong_end.tool_ok and not wrong_end.args_ok and wrong_end.failures == ["end_s=25 is not 20 within 1"]
    missing = score_call(q, "show_clip", {"video": "data/videos/vtest.avi", "start_s": 10})
    assert missing.tool_ok and not missing.args_ok and missing.failures == ["end_s missing"]
    other = score_call(q, "show_frame", right)
    assert not other.tool_ok and not other.args_ok and other.failures == ["called show_frame, expected show_clip"]
    assert not score_call(q, None, {}).tool_ok


def test_no_tool_question_is_right_only_without_a_call() -> None:
    q = question(None)
    assert score_call(q, None, {}).args_ok
    assert score_call(q, "list_scenes", {}).failures == ["called list_scenes, expected no tool"]


def test_latency_percentiles() -> None:
    result = latency([float(v) for v in range(1, 11)] + [None])
    assert result.mean == pytest.approx(5.5)
    assert result.p50 == pytest.approx(5.5)
    assert result.p90 == pytest.approx(9.1)
    assert latency([None]).mean is None
    assert latency([2.0]).p90 == 2.0


# -- the questions file --------------------------------------------------------------------------

def test_packaged_questions_cover_every_tool_twice() -> None:
    questions = load_questions().questions
    assert 36 <= len(questions) <= 40
    counts = Counter(q.tool for q in questions)
    assert {tool: counts[tool] for tool in TOOL_ARGUMENTS if counts[tool] < 2} == {}
    assert counts[None] >= 2  # questions to answer without a tool
    assert len({q.question.lower() for q in questions}) == len(questions)
    for q in questions:
        assert set(q.args) <= set(TOOL_ARGUMENTS[q.tool] if q.tool else ())


def test_packaged_questions_name_only_what_the_context_lists() -> None:
    """The agent can only get a video, scene or gallery right when its system prompt lists it."""
    bench = load_questions()
    context = bench.context.lower()
    for name in ("campus", "driveway", "bench-search", "data/videos/vtest.avi"):
        assert name in context
    for q in bench.questions:
        for name in ("video", "gallery"):
            if name in q.args:
                assert all(str(v).lower() in context for v in q.args[name].alternatives()), (q.id, name)
        if "scene" in q.args and q.tool != "calibrate":  # calibrate may name a new scene
            assert all(str(v) in context for v in q.args["scene"].alternatives()), q.id


def test_tool_table_matches_the_agent_tools() -> None:
    """The benchmark's table is the agent's: same tools, same argument names, and each expected call is a
    call the tool accepts."""
    from sleuth.graphs.investigate import TOOLS

    assert {name: set(args) for name, args in TOOL_ARGUMENTS.items()} == {
        name: set(tool.args.model_fields) for name, tool in TOOLS.items()}
    for q in load_questions().questions:
        if q.tool is None:
            continue
        call: dict[str, Any] = {}
        for name, check in q.args.items():
            value = check.alternatives()[0] if check.alternatives() else "x"
            call[name] = [value] if TOOL_ARGUMENTS[q.tool][name] == "list" else value
        for name, field in TOOLS[q.tool].args.model_fields.items():  # required but not checked
            if field.is_required() and name not in call:
                call[name] = 1.0 if TOOL_ARGUMENTS[q.tool][name] == "float" else "x"
        TOOLS[q.tool].args.model_validate(call)


@pytest.mark.parametrize(("change", "message"), [
    ({"tool": "find_people"}, "unknown tool 'find_people'"),
    ({"args": {"camera": {"check": "any"}}}, "detect has no argument 'camera'"),
    ({"args": {"start_s": {"check": "contains", "value": "3"}}}, "check it with 'exact'"),
    ({"args": {"start_s": {"check": "exact", "value": "thirty"}}}, "must be a number"),
    ({"args": {"scene": {"check": "any", "value": "campus"}}}, "'any' takes no value"),
    ({"args": {"scene": {"check": "exact"}}}, "'exact' needs a value"),
    ({"args": {"scene": {"check": "similar", "value": "x"}}}, "questions.0.args.scene.check"),
    ({"id": "b"}, "duplicate question ids: b"),
])
def test_invalid_questions_file_is_one_clear_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    first = {"id": "a", "question": "Run detect on vtest.avi, scene campus.", "tool": "detect", "args": {}} | change
    second = {"id": "b", "question": "Thanks!", "tool": None}
    path = tmp_path / "questions.json"
    path.write_text(json.dumps({"context": "Scenes: campus", "questions": [first, second]}))
    with pytest.raises(QuestionsError) as raised:
        load_questions(path)
    text = str(raised.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_questions_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionsError, match="cannot read the agent questions"):
        load_questions(tmp_path / "none.json")


# -- the runner ----------------------------------------------------------------------------------

def scripted_agent(answers: dict[str, Any], calls: list[dict[str, Any]]):  # noqa: ANN201 - a test double
    """A stand-in for first_tool_call: the scripted answer for a question text (default: no tool)."""

    def first_tool_call(question: str, *, runtime: Any, context: str, tool_mode: str = "auto",
                        inventory: Any = None) -> tuple[str | None, dict[str, Any], float | None, float]:
        calls.append({"question": question, "runtime": runtime, "context": context, "tool_mode": tool_mode})
        answer = answers.get(question, (None, {}))
        if isinstance(answer, Exception):
            raise answer
        return answer[0], answer[1], 0.25, 1.0

    return first_tool_call


def test_runner_scores_writes_files_and_survives_a_bad_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_questions()
    by_id = {q.id: q for q in bench.questions}
    answers: dict[str, Any] = {
        by_id["detect-2"].question: ("detect", {"video": "data/videos/ucf_Robbery102_frames.mp4", "scene": "driveway",
                                                "start_s": 30, "end_s": 55}),
        by_id["detect-3"].question: ("detect", {"video": "data/videos/ucf_Robbery102_frames.mp4", "scene": "driveway",
                                                "end_s": 90}),  # wrong end
        by_id["frame-1"].question: ("show_frame", {"video": "data/videos/vtest.avi", "time_s": 65.4}),
        by_id["clip-1"].question: ("show_frame", {"video": "data/videos/ucf_Robbery102_frames.mp4", "time_s": 36}),
        by_id["search-1"].question: StructuredOutputError("the tool call is not valid JSON", raw="{", errors="x"),
        # none-1: no tool (the default answer), as expected
    }
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("sleuth.graphs.investigate.first_tool_call", scripted_agent(answers, calls))
    runtime = SimpleNamespace(settings=Settings())
    ids = ["detect-2", "detect-3", "frame-1", "clip-1", "search-1", "none-1"]
    lines: list[str] = []

    result = run_agent_benchmark(tmp_path / "out", settings=runtime.settings, questions=ids, progress=lines.append,
                                 runtime=runtime)

    assert [call["question"] for call in calls] == [by_id[i].question for i in ids]
    assert all(call["context"] == bench.context and call["runtime"] is runtime for call in calls)
    outcome = {r.id: (r.tool_ok, r.args_ok) for r in result.per_question}
    assert outcome == {"detect-2": (True, True), "detect-3": (True, False), "frame-1": (True, True),
                       "clip-1": (False, False), "search-1": (False, False), "none-1": (True, True)}
    assert result.questions == 6 and result.errors == 1
    assert result.tool_accuracy == pytest.approx(4 / 6) and result.argument_accuracy == pytest.approx(3 / 6)
    assert (result.no_tool_questions, result.no_tool_correct, result.missed_calls) == (1, 1, 0)
    per_tool = {t.tool: t for t in result.per_tool}
    assert per_tool["detect"].tool_accuracy == 1.0 and per_tool["detect"].argument_accuracy == 0.5
    assert per_tool["show_clip"].called_instead == {"show_frame": 1}
    assert per_tool["search"].called_instead == {"error": 1}
    assert per_tool["(none)"].argument_accuracy == 1.0
    assert result.first_token_s.p50 == 0.25 and result.seconds.mean == 1.0  # the failed question has no timing
    assert "not valid JSON" in (result.per_question[4].error or "")
    assert len(lines) == 6 and lines[1].startswith("[2/6] detect-3: detect - tool ok, end_s=90 is not 60 within 1")

    saved = json.loads((tmp_path / "out" / "agent_bench.json").read_text())
    assert saved["argument_accuracy"] == pytest.approx(0.5) and len(saved["per_question"]) == 6
    table = (tmp_path / "out" / "agent_bench.md").read_text()
    assert "| detect | 2 | 100 | 50 | - |" in table
    assert "| all | 6 | 67 | 50 |  |" in table
    assert "| clip-1 |" in table and "| detect-2 |" not in table  # misses only


def test_runner_stops_when_the_endpoint_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    question = load_questions().questions[0].question
    answers: dict[str, Any] = {question: EndpointError("the LLM endpoint refused the connection")}
    monkeypatch.setattr("sleuth.graphs.investigate.first_tool_call", scripted_agent(answers, []))
    runtime = SimpleNamespace(settings=Settings())
    with pytest.raises(EndpointError):
        run_agent_benchmark(tmp_path, settings=runtime.settings, runtime=runtime)
    assert not (tmp_path / "agent_bench.json").exists()


def test_unknown_question_id(tmp_path: Path) -> None:
    with pytest.raises(QuestionsError, match="no agent question nope"):
        run_agent_benchmark(tmp_path, settings=Settings(), questions=["nope"], runtime=object())


def test_cli_builds_the_runtime_for_the_model_and_prints_the_table(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str | None] = []

    def from_settings(settings: Settings, *, model: str | None = None) -> Any:
        def for_agent(agent_model: str | None) -> Any:  # the agent's model over the graphs' runtime
            built.append(agent_model)
            return SimpleNamespace(settings=settings.model_copy(
                update={"llm": settings.llm.model_copy(update={"model": agent_model})}))

        return SimpleNamespace(settings=settings, for_agent=for_agent)

    monkeypatch.setattr("sleuth.graphs.runtime.Runtime.from_settings", from_settings)
    monkeypatch.setattr("sleuth.graphs.investigate.first_tool_call",
                        scripted_agent({"Thanks, that's all for now.": (None, {})}, []))
    app = typer.Typer()
    app.command()(eval_agent)
    result = CliRunner().invoke(app, ["--output", str(tmp_path), "--model", "qwen-test", "--question", "none-1",
                                      "--question", "scenes-1"])
    assert result.exit_code == 0, result.output
    assert built == ["qwen-test"]
    assert "agent tool choice · qwen-test · native steps · 2 questions" in result.output
    assert (tmp_path / "agent_bench.md").exists()


def test_default_questions_path_is_packaged() -> None:
    assert QUESTIONS.name == "agent_questions.json" and QUESTIONS.exists()


def test_invalid_calls_are_named_whichever_way_the_model_called() -> None:
    from sleuth.evals.agent_bench import invalid_call
    from sleuth.graphs.investigate import Inventory

    inventory = Inventory(scenes=["campus"], galleries=["campus"], videos=["data/videos/vtest.avi"])
    assert invalid_call(None, {}, inventory) is None
    assert invalid_call("list_scenes", {}, inventory) is None
    assert invalid_call("detect", {"video": "data/videos/vtest.avi", "scene": "campus"}, inventory) is None
    assert invalid_call("format_disk", {}, inventory) == "there is no tool 'format_disk'"
    assert "'driveway' is not one of ['campus']" in invalid_call(
        "detect", {"video": "data/videos/vtest.avi", "scene": "driveway"}, inventory)
    assert "unexpected" in invalid_call("list_scenes", {"properties": {}, "type": "object"}, inventory)
    assert "'time_s' is a required property" in invalid_call("show_frame", {"video": "data/videos/vtest.avi"},
                                                             inventory)
