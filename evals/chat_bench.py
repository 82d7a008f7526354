"""End-to-end question suite of the investigate agent: each question through the whole agent, tools really run.

``sleuth eval chat --data ../shared/data --output DIR`` prepares a fresh state under ``DIR/state``
(the suite's ``setup``: scenes calibrated on real clips, a gallery indexed; the person's own scenes
and rules are not touched), then asks every question of ``chat_questions.json`` (next to this
module) in its own thread, with confirmations approved, and checks the turn by code:

- **tools**: a question lists the tools that can answer it; one of them must be called (an empty
  list: no tool may be called). ``args`` are checked on the first call of a listed tool, as in
  :mod:`sleuth.evals.agent_bench`.
- **answer**: the answer must contain one of ``contains_any`` and all of ``contains_all``
  (case-insensitive), none of ``not_contains``; ``time_near`` needs a time in the answer within
  ``tolerance`` seconds; ``cites_rule_of`` needs the text of one of that scene's stored rules;
  ``consistent`` needs the answer to agree with the tool's counts (a detect run or a range with no
  event or no frame above the threshold must be reported as such, one with events must cite one).
- **state**: what the turn must have stored (a scene, a rule of a kind containing a text).
- **files**: the turn wrote a file (a frame, a contact sheet, a report).
- **always**: no error, an answer that is not empty, no sentence said twice, and every time and
  frame number in the answer is in the question, the tool calls or their results (grounding).

A question passes when every check passes. Written to ``DIR``: ``chat_bench.json`` (top-level
``pass_rate``, per-question tools, answer, checks, seconds and tokens) and ``chat_bench.md``.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sleuth.agents.times import cited_times, numbers
from sleuth.errors import SleuthError
from sleuth.evals.agent_bench import ArgCheck, Latency, check_argument, latency

if TYPE_CHECKING:
    from sleuth.config import Settings

QUESTIONS = Path(__file__).with_name("chat_questions.json")


class ChatQuestionsError(SleuthError):
    """The chat questions file is missing or invalid, or a requested id is not in it."""


# -- the questions file --------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerCheck(_Strict):
    contains_any: list[str] = Field(default_factory=list)
    contains_all: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    time_near: float | None = Field(default=None, description="A time (seconds) the answer must cite.")
    tolerance: float = Field(default=3.0, ge=0)
    cites_rule_of: str | None = Field(default=None, description="A scene: the answer quotes one of its rules.")
    consistent: bool = Field(default=False, description="The answer agrees with the tool's event or alarm count.")


class StateCheck(_Strict):
    scene_exists: str | None = None
    rule_scene: str | None = None
    rule_kind: Literal["anomaly", "normal"] | None = None
    rule_contains: str | None = None


class ChatQuestion(_Strict):
    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    tools: list[str] = Field(description="Tools that can answer it; one must be called ([]: none may be).")
    args: dict[str, ArgCheck] = Field(default_factory=dict)
    answer: AnswerCheck = Field(default_factory=AnswerCheck)
    state: StateCheck | None = None
    files: bool = False
    rubric: str = ""


class SceneSetup(_Strict):
    name: str
    video: str  # relative to the data folder
    end_s: float | None = None


class GallerySetup(_Strict):
    name: str
    videos: list[str]


class Setup(_Strict):
    scenes: list[SceneSetup] = Field(default_factory=list)
    galleries: list[GallerySetup] = Field(default_factory=list)


class ChatQuestionSet(_Strict):
    version: int = 1
    description: str = ""
    setup: Setup = Field(default_factory=Setup)
    questions: list[ChatQuestion] = Field(min_length=1)


def load_chat_questions(path: Path = QUESTIONS) -> ChatQuestionSet:
    from sleuth.graphs.investigate.tools import TOOLS

    try:
        questions = ChatQuestionSet.model_validate_json(path.read_text())
    except OSError as exc:
        raise ChatQuestionsError(f"cannot read the chat questions {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ChatQuestionsError(f"invalid chat questions {path}: {'.'.join(map(str, first['loc']))}: "
                                 f"{first['msg']}") from None
    ids = [q.id for q in questions.questions]
    unknown = sorted({tool for q in questions.questions for tool in q.tools if tool not in TOOLS})
    if len(set(ids)) != len(ids) or unknown:
        raise ChatQuestionsError(f"invalid chat questions {path}: " + (f"unknown tools {', '.join(unknown)}"
                                 if unknown else "duplicate ids"))
    return questions


# -- grounding -----------------------------------------------------------------------------------

FRAME = re.compile(r"\bframes?\s*#?\s*(\d+)", re.IGNORECASE)


def ungrounded(answer: str, sources: Sequence[str]) -> list[str]:
    """Times and frame numbers of ``answer`` that no source gives (times within 0.6 s count)."""
    text = "\n".join(sources)
    given = numbers(text)
    times = [value for _, value in cited_times(text)] + given
    whole = {int(n) for n in given}
    missing = [shown for shown, value in cited_times(answer) if not any(abs(value - t) <= 0.6 for t in times)]
    missing += [m.group(0) for m in FRAME.finditer(answer) if int(m.group(1)) not in whole]
    return missing


def repeated_sentence(answer: str) -> str | None:
    seen: set[str] = set()
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", answer):
        key = re.sub(r"\W+", " ", sentence.lower()).strip()
        if len(key) < 12:
            continue
        if key in seen:
            return sentence.strip()
        seen.add(key)
    return None


NEGATIVE = re.compile(r"\b(no|none|nothing|not|zero|0|without)\b", re.IGNORECASE)


def _normal_text(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


# -- one turn ------------------------------------------------------------------------------------

class Turn(BaseModel):
    """What one question did: the calls (name, arguments), the tools' full results, the answer."""

    calls: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    results: list[str] = Field(default_factory=list)
    answer: str = ""
    files: list[str] = Field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    first_token_s: float | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class QuestionResult(BaseModel):
    id: str
    question: str
    passed: bool
    failures: list[str]
    turn: Turn


def check_turn(question: ChatQuestion, turn: Turn, *, rules_of: Callable[[str], list[tuple[str, str]]],
               scenes: Callable[[], list[str]]) -> list[str]:
    """Why the turn fails the question (empty: it passes); see the module docstring."""
    failures: list[str] = []
    answer = turn.answer.strip()
    lower = answer.lower()
    called = [name for name, _ in turn.calls]
    if turn.error:
        failures.append(f"error: {turn.error}")
    if not answer:
        failures.append("no answer")
    if question.tools:
        matching = [(name, args) for name, args in turn.calls if name in question.tools]
        if not matching:
            failures.append(f"called {', '.join(called) or 'no tool'}, expected {' or '.join(question.tools)}")
        else:
            failures += [why for name, check in question.args.items()
                         if (why := check_argument(name, check, matching[0][1])) is not None]
    elif called:
        failures.append(f"called {', '.join(called)}, expected no tool")
    spec = question.answer
    if spec.contains_any and not any(text.lower() in lower for text in spec.contains_any):
        failures.append(f"answer has none of {spec.contains_any}")
    failures += [f"answer lacks {text!r}" for text in spec.contains_all if text.lower() not in lower]
    failures += [f"answer has {text!r}" for text in spec.not_contains if text.lower() in lower]
    if spec.time_near is not None and not any(abs(value - spec.time_near) <= spec.tolerance
                                              for _, value in cited_times(answer)):
        failures.append(f"answer cites no time within {spec.tolerance:g} s of {spec.time_near:g} s")
    if spec.cites_rule_of is not None:
        texts = [_normal_text(text) for _, text in rules_of(spec.cites_rule_of)]
        if not any(text and text in _normal_text(answer) for text in texts):
            failures.append(f"answer quotes none of the rules of {spec.cites_rule_of}")
    if spec.consistent:
        failures += _inconsistent(answer, turn.results)
    if question.files and not turn.files:
        failures.append("no file written")
    if question.state is not None:
        failures += _state_failures(question.state, rules_of=rules_of, scenes=scenes)
    missing = ungrounded(answer, [question.question, *turn.results,
                                  *(f"{name} {args}" for name, args in turn.calls)])
    if missing:
        failures.append(f"not in the tool results: {', '.join(missing[:4])}")
    repeated = repeated_sentence(answer)
    if repeated:
        failures.append(f"repeats: {repeated[:80]!r}")
    return failures


def _inconsistent(answer: str, results: Sequence[str]) -> list[str]:
    """The answer against the last result that counts events or frames above the threshold."""
    for result in reversed(results):
        events = re.search(r"frames, (\d+) event\(s\)", result)
        alarms = re.search(r"(\d+) frames above the alarm threshold", result)
        count = int(events.group(1)) if events else int(alarms.group(1)) if alarms else None
        if count is None:
            continue
        what = "events" if events else "frames above the threshold"
        if count == 0 and not NEGATIVE.search(answer):
            return [f"the tool found no {what}, the answer does not say so"]
        if count > 0:
            result_times = [value for _, value in cited_times(result)]
            if not any(any(abs(value - t) <= 0.6 for t in result_times) for _, value in cited_times(answer)):
                return [f"the tool found {count} {what}, the answer cites none of their times"]
        return []
    return []


def _state_failures(state: StateCheck, *, rules_of: Callable[[str], list[tuple[str, str]]],
                    scenes: Callable[[], list[str]]) -> list[str]:
    failures = []
    if state.scene_exists and state.scene_exists not in scenes():
        failures.append(f"scene {state.scene_exists} was not created")
    if state.rule_scene:
        rules = rules_of(state.rule_scene)
        wanted = (state.rule_contains or "").lower()
        if not any(wanted in text.lower() and (state.rule_kind in (None, kind)) for kind, text in rules):
            failures.append(f"no {state.rule_kind or ''} rule with {wanted!r} stored for {state.rule_scene}".replace(
                "  ", " "))
    return failures


# -- the run -------------------------------------------------------------------------------------

class ChatBenchResult(BaseModel):
    model: str
    questions_file: str
    questions: int
    passed: int
    pass_rate: float
    tool_calls: float = Field(description="Tool calls per question, mean.")
    first_token_s: Latency
    seconds: Latency
    prompt_tokens: float = Field(description="Prompt tokens per question, mean.")
    completion_tokens: float = Field(description="Completion tokens per question, mean.")
    setup_s: float
    per_question: list[QuestionResult]
    environment: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)


def bench_settings(settings: Settings, data: Path, state: Path) -> Settings:
    """The person's settings with a fresh state: data folder ``data``, scenes, rules, galleries, chat
    threads and checkpoints under ``state`` (Qdrant in local mode there, whatever QDRANT_URL says)."""
    qdrant = settings.qdrant.model_copy(update={"url": None, "path": state / "qdrant"})
    return settings.model_copy(update={"data_dir": state, "data_dirs": [data], "qdrant": qdrant})


def prepare(question_set: ChatQuestionSet, data: Path, runtime: Any, say: Callable[[str], None]) -> None:
    """The suite's setup: calibrate its scenes, index its galleries (real runs on real clips); what
    a kept state has already is not made again."""
    from sleuth.graphs.calibrate import CalibrateConfig, calibrate
    from sleuth.graphs.search.index import index_videos
    from sleuth.memory.gallery import GalleryStore
    from sleuth.memory.scenes import SceneStore
    from sleuth.tools.frames import frame_range

    scenes = set(SceneStore(runtime.settings).scenes())
    with GalleryStore(runtime.settings) as store:
        galleries = set(store.names())
    for scene in question_set.setup.scenes:
        if scene.name in scenes:
            continue
        video = _data_file(data, scene.video)
        _, stop = frame_range(video, None, scene.end_s)
        say(f"setup: calibrating scene {scene.name} on {video.name} up to {scene.end_s or 'the end'} s")
        calibrate([video], scene=scene.name, config=CalibrateConfig(stop=stop), runtime=runtime)
    for gallery in question_set.setup.galleries:
        if gallery.name in galleries:
            continue
        say(f"setup: indexing gallery {gallery.name} ({', '.join(gallery.videos)})")
        for video in gallery.videos:
            index_videos([_data_file(data, video)], gallery.name, runtime=runtime)


def _data_file(data: Path, relative: str) -> Path:
    path = data / relative
    if not path.is_file():
        raise ChatQuestionsError(f"the chat suite needs {path}", hint="pass --data with the shared data folder "
                                 "(videos/vtest.avi, videos/ucf_Robbery102_frames.mp4, ...)")
    return path


def ask(investigator: Any, thread_id: str, question: str) -> Turn:
    """One question through the whole agent (confirmations approved), with what it cost."""
    from sleuth.graphs.investigate.tools import result_text

    runtimes = (investigator.runtime, investigator.agent_runtime)
    logs = list({id(r.gateway.usage): r.gateway.usage for r in runtimes}.values())
    before = [len(log.records) for log in logs]
    turn = Turn()
    started = time.monotonic()
    pending = investigator.send(thread_id, question)
    while pending is not None:
        events, pending = pending, None
        for event in events:
            if event.type == "token" and turn.first_token_s is None and event.text:
                turn.first_token_s = time.monotonic() - started
            elif event.type == "tool_end":
                turn.files += event.files
            elif event.type == "interrupt":
                pending = investigator.resume(thread_id, True)
            elif event.type == "error":
                turn.error = event.text
            elif event.type == "answer":
                turn.answer = event.text
    turn.seconds = time.monotonic() - started
    for message in investigator.messages(thread_id):
        for call in message.get("tool_calls") or []:
            try:
                arguments = json.loads(call["function"]["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = {"raw": call["function"]["arguments"]}
            turn.calls.append((call["function"]["name"], arguments))
        if message["role"] == "tool":  # with its lead, the headline that code wrote from the same result
            turn.results.append(result_text(message))
    records = [record for log, start in zip(logs, before, strict=True) for record in log.records[start:]]
    turn.llm_calls = len(records)
    turn.prompt_tokens = sum(r.prompt_tokens for r in records)
    turn.completion_tokens = sum(r.completion_tokens for r in records)
    return turn


def run_chat_benchmark(data: Path, output: Path, *, settings: Settings, model: str | None = None,
                       questions: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
                       questions_path: Path = QUESTIONS, keep_state: bool = False) -> ChatBenchResult:
    """Set up a fresh state (``keep_state``: reuse the last run's, rule edits included), ask each
    question (or only the ids in ``questions``), check, write files."""
    from sleuth.graphs.investigate import InvestigateConfig, Investigator
    from sleuth.graphs.runtime import Runtime
    from sleuth.memory.scenes import SceneStore

    question_set = load_chat_questions(questions_path)
    chosen = question_set.questions
    if questions:
        by_id = {q.id: q for q in question_set.questions}
        unknown = [i for i in questions if i not in by_id]
        if unknown:
            raise ChatQuestionsError(f"no chat question {', '.join(unknown)}", hint=f"ids: {', '.join(by_id)}")
        chosen = [by_id[i] for i in questions]
    data = data.resolve()
    if not (data / "videos").is_dir():
        raise ChatQuestionsError(f"{data} has no videos/ folder", hint="pass --data ../shared/data")
    say = progress or (lambda _: None)
    output.mkdir(parents=True, exist_ok=True)
    state = output / "state"
    if not keep_state:
        shutil.rmtree(state, ignore_errors=True)
    runtime = Runtime.from_settings(bench_settings(settings, data, state))
    try:
        started = time.monotonic()
        prepare(question_set, data, runtime, say)
        setup_s = time.monotonic() - started
        investigator = Investigator(runtime, InvestigateConfig(confirm=False), files_root=output / "files",
                                    agent_model=model)

        def rules_of(scene: str) -> list[tuple[str, str]]:
            latest = runtime.memory.latest(scene)
            return [] if latest is None else [(rule.kind, rule.text) for rule in latest.rules]

        def scenes() -> list[str]:
            return SceneStore(runtime.settings).scenes()

        results = []
        run = time.strftime("%H%M%S")  # a new thread per question and run: a kept state keeps its old threads
        for number, question in enumerate(chosen, 1):
            turn = ask(investigator, f"{question.id}-{run}", question.question)
            failures = check_turn(question, turn, rules_of=rules_of, scenes=scenes)
            results.append(QuestionResult(id=question.id, question=question.question, passed=not failures,
                                          failures=failures, turn=turn))
            tools = ", ".join(name for name, _ in turn.calls) or "no tool"
            say(f"[{number}/{len(chosen)}] {question.id}: {'pass' if not failures else 'FAIL ' + '; '.join(failures)}"
                f" ({tools}; {turn.seconds:.1f} s)")
        model_name = str(investigator.agent_runtime.settings.llm.model)
    finally:
        runtime.close()
    passed = sum(r.passed for r in results)
    bench = ChatBenchResult(
        model=model_name, questions_file=str(questions_path), questions=len(results), passed=passed,
        pass_rate=passed / len(results), tool_calls=_mean([len(r.turn.calls) for r in results]),
        first_token_s=latency([r.turn.first_token_s for r in results]),
        seconds=latency([r.turn.seconds for r in results]),
        prompt_tokens=_mean([r.turn.prompt_tokens for r in results]),
        completion_tokens=_mean([r.turn.completion_tokens for r in results]), setup_s=setup_s,
        per_question=results,
        environment={"date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
                     "machine": platform.machine(), "data": str(data)})
    bench.outputs = {"result": str(output / "chat_bench.json"), "table": str(output / "chat_bench.md")}
    (output / "chat_bench.json").write_text(bench.model_dump_json(indent=2))
    (output / "chat_bench.md").write_text(markdown(bench))
    return bench


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def markdown(result: ChatBenchResult) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [f"# End-to-end chat questions: {result.model}", "",
             f"{result.passed} of {result.questions} questions answered right ({100 * result.pass_rate:.0f} %); "
             f"{result.tool_calls:.2f} tool calls, {result.prompt_tokens:.0f} prompt and "
             f"{result.completion_tokens:.0f} completion tokens per question; first token p50 "
             f"{s(result.first_token_s.p50)} s, finished answer p50 {s(result.seconds.p50)} s "
             f"(mean {s(result.seconds.mean)} s); setup {result.setup_s:.0f} s.", "",
             "| question | asked | tools | s | result | answer |", "| --- | --- | --- | ---: | --- | --- |"]
    for r in result.per_question:
        tools = ", ".join(name for name, _ in r.turn.calls) or "-"
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        lines.append(f"| {r.id} | {cell(r.question)} | {tools} | {r.turn.seconds:.1f} | {cell(verdict)} | "
                     f"{cell(r.turn.answer[:300])} |")
    return "\n".join(lines) + "\n"
