"""Schema-decoded agent steps (issue 17 item 1): one JSON object per step, built from the tool registry.

The endpoint is a scripted one (control flow only); the step schema is what llama.cpp turns into a
grammar, so these tests check the schema itself with jsonschema and the agent's use of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sleuth.graphs.investigate import Investigator, first_tool_call
from sleuth.graphs.investigate.configuration import InvestigateConfig
from sleuth.graphs.investigate.decide import Inventory, step_schema, tool_menu, use_schema
from sleuth.graphs.investigate.graph import tool_schemas

from tests.test_investigate import setup  # noqa: F401 - the fixture


def _valid(step: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(step, step_schema(tool_schemas()))
    except jsonschema.ValidationError:
        return False
    return True


def test_the_schema_admits_real_tools_with_valid_arguments_and_answer_only() -> None:
    assert _valid({"tool": "answer"})
    assert _valid({"tool": "list_scenes", "arguments": {}})
    assert _valid({"tool": "show_frame", "arguments": {"video": "data/videos/vtest.avi", "time_s": 20}})
    assert not _valid({"tool": "delete_everything", "arguments": {}})  # no such tool
    assert not _valid({"tool": "show_frame", "arguments": {"video": "v.avi"}})  # time_s missing
    assert not _valid({"tool": "show_frame", "arguments": {"video": "v.avi", "time_s": "twenty"}})
    assert not _valid({"tool": "show_frame", "arguments": {"video": "v.avi", "time_s": 1, "speed": 2}})
    assert not _valid({"tool": "answer", "text": "hello"})
    names = [tool["function"]["name"] for tool in tool_schemas()]
    menu = tool_menu(tool_schemas())
    assert all(f"- {name}(" in menu for name in names)
    assert "show_frame(video: string, time_s: number)" in menu


class Steps:
    """A scripted model: steps (requests with a JSON schema) in order, and one answer text."""

    def __init__(self, steps: list[dict[str, Any] | str], answer: str) -> None:
        self.steps = list(steps)
        self.answer = answer
        self.step_requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> tuple[str, None]:
        if (body.get("response_format") or {}).get("type") == "json_schema":
            self.step_requests.append(body)
            step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
            return (step if isinstance(step, str) else json.dumps(step)), None
        assert "tools" not in body  # an answer is written without tools
        return self.answer, None


def test_a_schema_step_runs_the_tool_then_the_answer_streams(setup: dict[str, Any]) -> None:  # noqa: F811
    steps = Steps([{"tool": "show_clip", "arguments": {"video": str(setup["video"]), "start_s": 0.0, "end_s": 2.0}},
                   {"tool": "answer"}], "The sheet shows the red walker.")
    setup["script"].responder = steps
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"), context="Scenes: gate")
    events = list(agent.send("t1", "show me the first two seconds of gate.mp4"))
    kinds = [event.type for event in events]
    assert kinds[0] == "tool_start" and "tool_end" in kinds and kinds[-1] == "answer" and "token" in kinds
    assert events[-1].text == "The sheet shows the red walker."
    first = steps.step_requests[0]
    schema = first["response_format"]["json_schema"]["schema"]
    assert schema == step_schema(tool_schemas()) and "tools" not in first
    assert "Tools:\n- detect(video: string, scene: string" in first["messages"][0]["content"]


def test_a_step_that_stays_invalid_ends_in_an_answer_not_a_crash(setup: dict[str, Any]) -> None:  # noqa: F811
    setup["script"].responder = Steps(['{"tool": "format_disk"}'], "I cannot do that with my tools.")
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"), context="Scenes: gate")
    events = list(agent.send("t1", "wipe the disk"))
    assert [event.type for event in events if event.type.startswith("tool")] == []
    assert events[-1].type == "answer" and events[-1].text == "I cannot do that with my tools."


def test_a_repeated_schema_step_becomes_the_answer(setup: dict[str, Any]) -> None:  # noqa: F811
    call = {"tool": "show_clip", "arguments": {"video": str(setup["video"]), "start_s": 0.0, "end_s": 1.0}}
    setup["script"].responder = Steps([call, call], "The first second shows the red walker.")
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"), context="Scenes: gate")
    events = list(agent.send("t1", "show me the first second of gate.mp4"))
    assert [event.tool for event in events if event.type == "tool_start"] == ["show_clip"]
    assert events[-1].text == "The first second shows the red walker."


def test_first_tool_call_uses_the_same_step(setup: dict[str, Any]) -> None:  # noqa: F811
    setup["script"].responder = Steps([{"tool": "search", "arguments": {"query": "a man running",
                                                                          "gallery": "campus"}}], "")
    name, arguments, ttft, seconds = first_tool_call("find a man running", runtime=setup["runtime"],
                                                     context="Galleries: campus", tool_mode="schema")
    assert (name, arguments, ttft) == ("search", {"query": "a man running", "gallery": "campus"}, None)
    assert seconds >= 0


@pytest.mark.parametrize(("mode", "model", "expected"), [
    ("auto", "qwen2.5-coder-0.5b", True), ("auto", "openai/gpt-4o-mini", False),
    ("schema", "openai/gpt-4o-mini", True), ("native", "qwen2.5-coder-0.5b", False)])
def test_auto_uses_the_schema_on_the_embedded_endpoint_only(mode: str, model: str, expected: bool) -> None:
    from types import SimpleNamespace

    from sleuth.config import Settings

    runtime = SimpleNamespace(settings=Settings(llm={"model": model}))
    assert use_schema(runtime, mode) is expected  # type: ignore[arg-type]


def test_the_step_prompt_is_locked() -> None:
    assert (Path(__file__).resolve().parents[1] / "prompts" / "investigate.step.toml").is_file()


def test_scene_gallery_and_video_arguments_name_only_what_exists() -> None:
    from sleuth.graphs.investigate.decide import Inventory

    inventory = Inventory(scenes=["demo"], galleries=["campus"], videos=["/data/vtest.avi"])
    schema = step_schema(tool_schemas(), inventory)

    def valid(step: dict[str, Any]) -> bool:
        try:
            jsonschema.validate(step, schema)
        except jsonschema.ValidationError:
            return False
        return True

    assert valid({"tool": "detect", "arguments": {"video": "/data/vtest.avi", "scene": "demo", "start_s": 40}})
    assert not valid({"tool": "detect", "arguments": {"video": "/data/vtest.avi", "scene": "Robbery102_frames"}})
    assert not valid({"tool": "detect", "arguments": {"video": "/data/NORMAL_FOOTAGE", "scene": "demo"}})
    assert valid({"tool": "calibrate", "arguments": {"video": "/data/vtest.avi", "scene": "a_new_camera"}})
    assert valid({"tool": "search", "arguments": {"query": "a red coat", "gallery": "campus"}})
    assert not valid({"tool": "search", "arguments": {"query": "a red coat", "gallery": "cam9"}})
    free = step_schema(tool_schemas(), Inventory())  # nothing calibrated yet: the tool says so, not the grammar
    jsonschema.validate({"tool": "detect", "arguments": {"video": "v.avi", "scene": "demo"}}, free)


def test_the_agent_gets_what_exists_from_its_snapshot(setup: dict[str, Any]) -> None:  # noqa: F811
    steps = Steps([{"tool": "answer"}], "Hello.")
    setup["script"].responder = steps
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"))  # context from disk
    list(agent.send("t1", "hello"))
    schema = steps.step_requests[0]["response_format"]["json_schema"]["schema"]
    detect = next(option for option in schema["anyOf"] if option["properties"]["tool"].get("const") == "detect")
    assert detect["properties"]["arguments"]["properties"]["video"]["enum"] == [str(setup["video"])]


def test_the_answer_after_schema_steps_sees_calls_and_results_as_plain_text() -> None:
    from sleuth.graphs.investigate.decide import ANSWER_REQUEST, NO_TOOL_REQUEST, answer_messages

    call = {"id": "c1", "type": "function", "function": {"name": "list_scenes", "arguments": "{}"}}
    messages = [{"role": "system", "content": "You are Sleuth."}, {"role": "user", "content": "Which scenes?"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "name": "list_scenes", "content": "- demo (rules v1)"}]
    plain = answer_messages(messages)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[2]["content"] == "I ran list_scenes({})."
    assert plain[3]["content"] == f"Result of list_scenes:\n- demo (rules v1)\n\n{ANSWER_REQUEST}"
    assert all("tool_calls" not in m for m in plain)
    quiet = answer_messages(messages[:2])  # no tool ran: the question, and not to claim anything was seen
    assert quiet[-1]["content"] == f"Which scenes?\n\n{NO_TOOL_REQUEST}" and "say nothing" in NO_TOOL_REQUEST
    led = answer_messages(messages, lead="Detect on a.mp4: no event.")
    assert led[-1]["content"].endswith('do not repeat it: "Detect on a.mp4: no event."')


def test_the_answer_starts_with_the_steps_own_beginning() -> None:
    """llama.cpp reuses its cached prompt only for a common beginning: the answer's prompt starts
    with the step's system message and the person's message, hints included."""
    from sleuth.graphs.investigate.decide import answer_messages, step_messages

    call = {"id": "c1", "type": "function", "function": {"name": "list_scenes", "arguments": "{}"}}
    base = [{"role": "system", "content": "You are Sleuth."}, {"role": "user", "content": "scenes at 0:10?"}]
    step = step_messages(base, tool_schemas())
    answer = answer_messages(step_messages([*base, {"role": "assistant", "content": "", "tool_calls": [call]},
                                            {"role": "tool", "tool_call_id": "c1", "name": "list_scenes",
                                             "content": "- demo"}], tool_schemas()))
    assert answer[:2] == step[:2] and "(Times: 0:10 = 10 s)" in step[1]["content"]


def test_step_hints_spell_out_clock_times_and_the_video_a_word_names() -> None:
    from sleuth.graphs.investigate.decide import step_hints, step_messages

    inventory = Inventory(videos=["data/videos/vtest.avi", "data/videos/xd_GoldenEye_frames.mp4",
                                  "data/ped2_train_01.mp4", "data/ped2_test_02.mp4"])
    assert step_hints("Show the frame at 1:05 of the GoldenEye clip", inventory) == [
        "Times: 1:05 = 65 s", "Video named: data/videos/xd_GoldenEye_frames.mp4"]
    assert step_hints("the ped2 clip at 12:30:00", inventory) == []  # two ped2 videos; a clock of the day
    messages = step_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "from 0:10 to 0:20"}],
                             [], inventory)
    assert messages[-1]["content"] == "from 0:10 to 0:20\n(Times: 0:10 = 10 s, 0:20 = 20 s)"


def test_a_half_or_the_last_seconds_of_the_named_video_become_a_range() -> None:
    from sleuth.graphs.investigate.decide import step_hints

    inventory = Inventory(videos=["data/vtest.avi", "data/gate.mp4"], durations={"data/vtest.avi": 79.5})
    assert step_hints("what is unusual in the second half of vtest.avi?", inventory)[-1] == \
        "second half of vtest.avi = start_s 39.75, end_s 79.5"
    assert step_hints("the first half of vtest", inventory)[-1] == "first half of vtest.avi = start_s 0, end_s 39.75"
    assert step_hints("the last 10 seconds of vtest.avi", inventory)[-1] == \
        "last 10 seconds of vtest.avi = start_s 69.5, end_s 79.5"
    assert step_hints("the second half of gate.mp4", inventory) == ["Video named: data/gate.mp4"]  # length unknown
    assert step_hints("the second half of both", inventory) == []  # no video named


def test_a_video_that_does_not_exist_is_answered_without_running_another(setup: dict[str, Any]) -> None:  # noqa: F811
    steps = Steps([{"tool": "show_frame", "arguments": {"video": str(setup["video"]), "time_s": 1.0}}],
                  "There is no parking_lot.mp4.")
    setup["script"].responder = steps
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"))  # context from disk
    events = list(agent.send("t1", "show me the frame at 10 s of parking_lot.mp4"))
    assert steps.step_requests == [] and not [event for event in events if event.type == "tool_start"]
    assert events[-1].text == "There is no parking_lot.mp4."
    request = setup["script"].requests[-1]["messages"][-1]["content"]
    assert "There is no video parking_lot.mp4" in request and setup["video"].name in request


def test_the_answer_starts_with_the_tools_own_headline(setup: dict[str, Any]) -> None:  # noqa: F811
    from sleuth.graphs.investigate.graph import _for_model
    from sleuth.graphs.investigate.tools import answer_lead

    turn = [{"role": "tool", "name": "summarise_range", "content": "a.mp4 0:01.0-0:02.0: max 0.91\n- frame 3",
             "lead": "a.mp4 0:01.0-0:02.0: max 0.91"}]
    assert answer_lead(turn) == "a.mp4 0:01.0-0:02.0: max 0.91" and answer_lead([{**turn[0], "lead": ""}]) == ""
    explained = {"role": "tool", "name": "explain", "content": "- event ...", "lead": "Explain event 1: normal."}
    assert answer_lead([*turn, explained]) == "a.mp4 0:01.0-0:02.0: max 0.91\nExplain event 1: normal."
    assert "lead" not in _for_model(turn[0])  # the endpoint never sees it


def test_a_list_of_what_exists_is_answered_as_it_is(setup: dict[str, Any]) -> None:  # noqa: F811
    """A small model retelling a list drops items; a turn that only listed answers with the list."""
    steps = Steps([{"tool": "list_videos", "arguments": {}}, {"tool": "answer"}], "There is one video.")
    setup["script"].responder = steps
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"))
    events = list(agent.send("t1", "what videos are there?"))
    assert events[-1].type == "answer", events[-1]
    assert events[-1].text.startswith("Videos (") and f"- {setup['video']}" in events[-1].text, events[-1].text
    assert "There is one video." not in events[-1].text  # no answer was asked of the model


def test_a_shown_frame_is_answered_with_what_the_captioner_sees_not_a_retelling(setup: dict[str, Any]) -> None:  # noqa: F811
    steps = Steps([{"tool": "show_frame", "arguments": {"video": str(setup["video"]), "time_s": 1.0}},
                   {"tool": "answer"}], "Frame 12 shows a blue car.")  # a retelling would invent this
    setup["script"].responder = steps
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"))
    events = list(agent.send("t1f", "what happens at 1 s in gate.mp4?"))
    answer = events[-1]
    assert answer.type == "answer" and answer.text.startswith("Frame 10 of gate.mp4 at 0:01.0; the captioner sees:")
    assert "blue car" not in answer.text and answer.files and answer.files[0].endswith(".jpg")
    assert "Frame 12" not in answer.text  # no answer was asked of the model
    seen = next(m for m in agent.messages("t1f") if m["role"] == "tool")["content"]
    assert "the captioner sees:" in seen  # the model's next step or turn knows it too


def test_rules_are_answered_as_stored_with_each_rule_kind(setup: dict[str, Any]) -> None:  # noqa: F811
    setup["script"].responder = Steps([{"tool": "show_rules", "arguments": {"scene": "gate"}}, {"tool": "answer"}],
                                      "Walking on the path is an anomaly and riding a bicycle is normal.")
    agent = Investigator(setup["runtime"], InvestigateConfig(tool_mode="schema"))
    answer = list(agent.send("t1r", "what is an anomaly at gate?"))[-1]
    assert answer.text.startswith("Rules of gate, v1: 1 anomaly and 1 normal.")
    assert "- anomaly: Riding a bicycle" in answer.text and "- normal: Walking on the path" in answer.text
    assert "is normal" not in answer.text  # the model's swapped kinds never reach the person
    shown = next(m for m in agent.messages("t1r") if m["role"] == "tool")["content"]
    assert shown.startswith("Rules of gate, v1:")  # the model sees which scene and version too


def test_a_calibration_is_answered_as_stored_but_a_detect_is_explained() -> None:
    from sleuth.graphs.investigate.tools import verbatim_answer

    stored = {"role": "tool", "name": "calibrate", "content": "Scene lobby calibrated on 201 frames of a.mp4 "
              "(0:00.0-0:20.0); rules v1, 1 anomaly and 1 normal:\n- anomaly: Cycling\n- normal: Walking"}
    assert verbatim_answer([stored]) == stored["content"]
    detect = {"role": "tool", "name": "detect", "content": "detect on a.mp4 ...", "lead": "Detect on a.mp4: no event."}
    assert verbatim_answer([stored, detect]) is None and verbatim_answer([]) is None
    assert verbatim_answer([stored, dict(stored)]) == stored["content"]  # the same call twice: said once
