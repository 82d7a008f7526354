"""The end-to-end chat suite's checks: what makes an answer right, grounded and consistent."""

from __future__ import annotations

from sleuth.evals.agent_bench import ArgCheck
from sleuth.evals.chat_bench import (
    AnswerCheck,
    ChatQuestion,
    StateCheck,
    Turn,
    check_turn,
    load_chat_questions,
    repeated_sentence,
    ungrounded,
)

DETECT = ("detect on vtest.avi, scene campus, rules v1: 395 frames, 1 event(s).\n"
          "- event 1: 0:52.3-0:55.0 (frames 523-550), peak 0.81 at 0:53.1 (frame 531); rules: none")


def _check(question: ChatQuestion, turn: Turn, rules: list[tuple[str, str]] | None = None,
           scenes: list[str] | None = None) -> list[str]:
    return check_turn(question, turn, rules_of=lambda scene: rules or [], scenes=lambda: scenes or [])


def test_the_shipped_suite_is_valid_and_large_enough() -> None:
    questions = load_chat_questions()
    assert len(questions.questions) >= 25
    assert {scene.name for scene in questions.setup.scenes} == {"campus", "driveway"}


def test_a_grounded_answer_that_cites_the_event_passes() -> None:
    question = ChatQuestion(id="d", question="Is anything unusual in vtest.avi? Scene campus.", tools=["detect"],
                            args={"scene": ArgCheck(check="exact", value="campus")},
                            answer=AnswerCheck(consistent=True))
    turn = Turn(calls=[("detect", {"video": "/d/videos/vtest.avi", "scene": "campus"})], results=[DETECT],
                answer="One event: 0:52.3 to 0:55.0, peaking at frame 531.")
    assert _check(question, turn) == []


def test_an_invented_time_or_frame_fails_as_ungrounded() -> None:
    assert ungrounded("It starts at 0:41 and ends at frame 900.", [DETECT]) == ["0:41", "frame 900"]
    assert ungrounded("At 53.1 s, frame 531.", [DETECT]) == []


def test_an_answer_that_hides_the_event_or_claims_one_that_was_not_found_fails() -> None:
    question = ChatQuestion(id="d", question="Anything unusual?", tools=["detect"], answer=AnswerCheck(consistent=True))
    hidden = Turn(calls=[("detect", {})], results=[DETECT], answer="The footage looks normal throughout.")
    assert any("cites none" in why for why in _check(question, hidden))
    quiet = DETECT.replace("1 event(s)", "0 event(s)").split("\n")[0]
    claimed = Turn(calls=[("detect", {})], results=[quiet], answer="A person runs across the path.")
    assert any("does not say so" in why for why in _check(question, claimed))
    said = Turn(calls=[("detect", {})], results=[quiet], answer="No event was found in the 395 frames.")
    assert _check(question, said) == []


def test_wrong_tool_no_tool_and_unwanted_tool_fail() -> None:
    question = ChatQuestion(id="f", question="frame at 20 s", tools=["show_frame"],
                            args={"time_s": ArgCheck(check="exact", value=20, tolerance=1.0)})
    assert "called no tool, expected show_frame" in _check(question, Turn(answer="Here it is."))
    assert any("time_s=35" in why for why in
               _check(question, Turn(calls=[("show_frame", {"time_s": 35})], results=["frame 350"], answer="ok")))
    chat = ChatQuestion(id="h", question="hello", tools=[])
    assert _check(chat, Turn(calls=[("list_scenes", {})], answer="Hi.")) == ["called list_scenes, expected no tool"]


def test_state_rules_times_repetition_and_errors_are_checked() -> None:
    question = ChatQuestion(id="r", question="add: no cars on the walkway", tools=["propose_rule_edit"],
                            answer=AnswerCheck(time_near=36, tolerance=5, cites_rule_of="campus"),
                            state=StateCheck(rule_scene="campus", rule_kind="anomaly", rule_contains="car"))
    turn = Turn(calls=[("propose_rule_edit", {})], results=["saved rules v2; the robbery starts at 0:38"],
                answer="Saved: 'No cars on the walkway.' It starts at 0:38.")
    assert _check(question, turn, rules=[("anomaly", "No cars on the walkway")]) == []
    failures = _check(question, turn.model_copy(update={"answer": "Done.", "error": "scene campus has no rules"}),
                      rules=[("normal", "No cars on the walkway")])
    assert any(why.startswith("error:") for why in failures)
    assert any("no time within 5 s of 36" in why for why in failures)
    assert any("quotes none of the rules" in why for why in failures)
    assert any("no anomaly rule with 'car'" in why for why in failures)
    assert repeated_sentence("The video was shot at 40 s. It is normal. The video was shot at 40 s.")
    assert repeated_sentence("One. Two. Three.") is None
