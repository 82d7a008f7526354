"""Tool-choice benchmark of the investigate agent: the right first tool, with the right arguments.

``sleuth eval agent`` asks the agent every question of ``agent_questions.json`` (next to this
module) for its *first step only* (:func:`sleuth.graphs.investigate.first_tool_call`; no tool
runs), with the file's fixed ``context`` (scenes, galleries, videos) in the system prompt, and
compares the call with the expected one.

**Scoring**, per question:

- *tool*: the called tool's name equals the expected one; a question whose expected tool is null
  (thanks, small talk, a definition) is right when the agent calls no tool.
- *arguments*: the tool is right and every listed argument passes its check (arguments not listed
  are not checked):

  - ``exact``: strings equal after lowercasing and stripping (inner whitespace collapsed);
    numbers (and numeric strings, which the tool's pydantic model also accepts) within the
    check's ``tolerance``, e.g. 1.0 for times in seconds, 0 for an event number;
  - ``contains``: the lowercased expected text appears in the lowercased value, e.g.
    ``vtest.avi`` in ``data/videos/vtest.avi``;
  - ``any``: present and not empty.

  A missing (or null, or empty) argument fails, unless the check is ``optional`` (the tool's
  default means the same, e.g. ``start_s`` 0 for "the first minute"). A list ``value`` gives
  alternatives: one must pass. A list argument (rule texts) passes when one of its items does.

**Metrics**: tool accuracy, argument accuracy, per expected tool and overall; for the no-tool
questions, how many were answered without a tool; for the others, how many got no call at all.
Latency: mean, p50 and p90 of the seconds to the first token and of the seconds per question.

Written to ``output``: ``agent_bench.json`` (everything) and ``agent_bench.md`` (tables).
"""

from __future__ import annotations

import platform
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sleuth.errors import ConfigError, EndpointError, ModelFileError, SleuthError

if TYPE_CHECKING:
    from sleuth.config import Settings
    from sleuth.graphs.investigate import ToolMode

QUESTIONS = Path(__file__).with_name("agent_questions.json")
NO_TOOL = "(none)"

ArgKind = Literal["str", "float", "int", "list"]

#: The agent's tools and their arguments (docs: the issue 7 tool table), which the questions must use.
TOOL_ARGUMENTS: dict[str, dict[str, ArgKind]] = {
    "list_scenes": {},
    "list_videos": {"folder": "str"},
    "list_galleries": {},
    "detect": {"video": "str", "scene": "str", "start_s": "float", "end_s": "float"},
    "explain": {"video": "str", "scene": "str", "event": "int"},
    "search": {"query": "str", "gallery": "str", "top_k": "int"},
    "calibrate": {"video": "str", "scene": "str", "end_s": "float"},
    "list_rules": {"scene": "str"},
    "show_rules": {"scene": "str", "version": "int"},
    "propose_rule_edit": {"scene": "str", "add_anomaly": "list", "add_normal": "list", "remove": "list"},
    "show_frame": {"video": "str", "time_s": "float"},
    "show_clip": {"video": "str", "start_s": "float", "end_s": "float"},
    "summarise_range": {"video": "str", "scene": "str", "start_s": "float", "end_s": "float"},
}

Scalar = str | int | float


class QuestionsError(SleuthError):
    """The questions file is missing or invalid, or a requested question id is not in it."""


# -- the questions file --------------------------------------------------------------------------

class ArgCheck(BaseModel):
    """How one argument of the expected call is checked."""

    model_config = ConfigDict(extra="forbid")

    check: Literal["exact", "contains", "any"]
    value: Scalar | list[Scalar] | None = Field(
        default=None, description="Expected value; a list gives alternatives (one must pass). Not for 'any'.")
    tolerance: float = Field(default=0.0, ge=0, description="Numbers (exact): largest accepted difference.")
    optional: bool = Field(default=False, description="A missing argument passes (the tool default means the same).")

    @model_validator(mode="after")
    def _consistent(self) -> ArgCheck:
        expected = self.alternatives()
        if self.check == "any":
            if expected:
                raise ValueError("'any' takes no value")
            return self
        if not expected:
            raise ValueError(f"'{self.check}' needs a value")
        if self.check == "contains" and not all(isinstance(v, str) and v.strip() for v in expected):
            raise ValueError("'contains' needs text")
        if self.tolerance and not all(_is_number(v) for v in expected):
            raise ValueError("a tolerance needs a numeric value")
        return self

    def alternatives(self) -> list[Scalar]:
        if self.value is None:
            return []
        return list(self.value) if isinstance(self.value, list) else [self.value]


class AgentQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    tool: str | None = Field(description="Expected first tool; null: the agent should answer without one.")
    args: dict[str, ArgCheck] = Field(default_factory=dict)
    note: str = ""

    @model_validator(mode="after")
    def _known(self) -> AgentQuestion:
        if self.tool is None:
            if self.args:
                raise ValueError("a question without a tool has no arguments to check")
            return self
        if self.tool not in TOOL_ARGUMENTS:
            raise ValueError(f"unknown tool {self.tool!r} (known: {', '.join(TOOL_ARGUMENTS)})")
        kinds = TOOL_ARGUMENTS[self.tool]
        for name, check in self.args.items():
            if name not in kinds:
                raise ValueError(f"{self.tool} has no argument {name!r} (it has: {', '.join(kinds) or 'none'})")
            numeric = kinds[name] in ("float", "int")
            if check.check == "contains" and numeric:
                raise ValueError(f"{name} is a number: check it with 'exact' and a tolerance")
            if check.check == "exact" and numeric != all(_is_number(v) for v in check.alternatives()):
                raise ValueError(f"{name}: the expected value must be {'a number' if numeric else 'text'}")
        return self


class QuestionSet(BaseModel):
    version: int = 1
    description: str = ""
    scoring: str = ""
    context: str = Field(min_length=1, description="What exists now, given to the agent's system prompt.")
    inventory: dict[str, list[str]] | None = Field(default=None, description="The same as lists (scenes, galleries, "
                                                   "videos): the enums of schema-decoded steps.")
    questions: list[AgentQuestion] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> QuestionSet:
        ids = [question.id for question in self.questions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate question ids: {', '.join(duplicates)}")
        return self


def load_questions(path: Path = QUESTIONS) -> QuestionSet:
    """Read and validate the questions file; any problem is one :class:`QuestionsError` line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise QuestionsError(f"cannot read the agent questions {path}: {exc.strerror or exc}") from None
    try:
        return QuestionSet.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise QuestionsError(f"invalid agent questions {path}: {where}: {first['msg']}{more}",
                             hint="fix the file; see the scoring note in sleuth/evals/agent_bench.py") from None


def select(questions: QuestionSet, ids: Sequence[str] | None) -> list[AgentQuestion]:
    if not ids:
        return list(questions.questions)
    by_id = {question.id: question for question in questions.questions}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise QuestionsError(f"no agent question {', '.join(unknown)}",
                             hint=f"ids: {', '.join(by_id)}")
    return [by_id[i] for i in ids]


# -- scoring -------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value)).strip().lower()


def _empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | tuple | dict) and not value)


def _passes(check: ArgCheck, expected: Scalar, value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_passes(check, expected, item) for item in value)
    if check.check == "contains":
        return _text(expected) in _text(value)
    if _is_number(expected):
        number = _as_number(value)
        return number is not None and abs(number - float(expected)) <= check.tolerance + 1e-9
    return _text(value) == _text(expected)


def check_argument(name: str, check: ArgCheck, arguments: Mapping[str, Any]) -> str | None:
    """Why argument ``name`` of the call fails ``check``, or None when it passes."""
    value = arguments.get(name)
    if _empty(value):
        return None if check.optional else f"{name} missing"
    if check.check == "any":
        return None
    expected = check.alternatives()
    if any(_passes(check, alternative, value) for alternative in expected):
        return None
    shown = " or ".join(repr(v) for v in expected)
    if check.check == "contains":
        return f"{name}={value!r} does not contain {shown}"
    within = f" within {check.tolerance:g}" if check.tolerance else ""
    return f"{name}={value!r} is not {shown}{within}"


class Score(BaseModel):
    tool_ok: bool
    args_ok: bool
    failures: list[str] = Field(default_factory=list)


def score_call(question: AgentQuestion, tool: str | None, arguments: Mapping[str, Any]) -> Score:
    """Score one first call against the question's expected call (see the module docstring)."""
    if tool != question.tool:
        called = tool or "no tool"
        return Score(tool_ok=False, args_ok=False, failures=[f"called {called}, expected {question.tool or 'no tool'}"])
    failures = [reason for name, check in question.args.items()
                if (reason := check_argument(name, check, arguments or {})) is not None]
    return Score(tool_ok=True, args_ok=not failures, failures=failures)


# -- results -------------------------------------------------------------------------------------

class QuestionResult(BaseModel):
    id: str
    question: str
    expected_tool: str | None
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    tool_ok: bool = False
    args_ok: bool = False
    failures: list[str] = Field(default_factory=list)
    invalid: str | None = Field(default=None, description="Why the call is malformed or names what does not exist "
                                "(a tool, a scene, a gallery, a video), or None.")
    error: str | None = None
    seconds_to_first_token: float | None = None
    seconds: float | None = None


class ToolSummary(BaseModel):
    tool: str  # NO_TOOL for the questions that expect no call
    questions: int
    tool_accuracy: float
    argument_accuracy: float
    called_instead: dict[str, int] = Field(default_factory=dict)


class Latency(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None


class AgentBenchResult(BaseModel):
    model: str
    tool_mode: Literal["schema", "native"] = Field(default="native", description="How the model picked its tool: "
                                                   "a step decoded under the tools' JSON schema, or native tool calls.")
    questions_file: str
    questions: int
    tool_accuracy: float
    argument_accuracy: float
    no_tool_questions: int
    no_tool_correct: int  # answered without a tool, as expected
    missed_calls: int  # expected a tool, the agent called none
    errors: int
    invalid_calls: int = 0  # malformed, or naming a tool, scene, gallery or video that does not exist
    per_tool: list[ToolSummary]
    first_token_s: Latency
    seconds: Latency
    per_question: list[QuestionResult]
    environment: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)


def latency(values: Sequence[float | None]) -> Latency:
    """Mean, p50 and p90 (linear interpolation between ranks) of the values that are known."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return Latency()
    if len(known) == 1:
        return Latency(mean=known[0], p50=known[0], p90=known[0])
    deciles = statistics.quantiles(known, n=10, method="inclusive")
    return Latency(mean=statistics.fmean(known), p50=statistics.median(known), p90=deciles[8])


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def summarise(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Overall and per-tool accuracies, no-tool counts and latency of scored questions."""
    order = [*TOOL_ARGUMENTS, None]
    per_tool = []
    for tool in order:
        group = [r for r in results if r.expected_tool == tool]
        if not group:
            continue
        instead: dict[str, int] = {}
        for r in group:
            if not r.tool_ok:
                key = "error" if r.error else (r.tool or NO_TOOL)
                instead[key] = instead.get(key, 0) + 1
        per_tool.append(ToolSummary(tool=tool or NO_TOOL, questions=len(group),
                                    tool_accuracy=_share([r.tool_ok for r in group]),
                                    argument_accuracy=_share([r.args_ok for r in group]),
                                    called_instead=dict(sorted(instead.items()))))
    no_tool = [r for r in results if r.expected_tool is None]
    return {
        "questions": len(results),
        "tool_accuracy": _share([r.tool_ok for r in results]),
        "argument_accuracy": _share([r.args_ok for r in results]),
        "no_tool_questions": len(no_tool),
        "no_tool_correct": sum(r.tool_ok for r in no_tool),
        "missed_calls": sum(r.expected_tool is not None and r.tool is None and r.error is None for r in results),
        "errors": sum(r.error is not None for r in results),
        "invalid_calls": sum(r.invalid is not None for r in results),
        "per_tool": per_tool,
        "first_token_s": latency([r.seconds_to_first_token for r in results]),
        "seconds": latency([r.seconds for r in results]),
    }


def invalid_call(tool: str | None, arguments: Mapping[str, Any], inventory: Any) -> str | None:
    """Why a call is malformed or names what does not exist, by the step schema of the tool registry
    with the inventory's enums (the same check whichever way the model made the call); None if fine."""
    import jsonschema
    from sleuth.graphs.investigate.decide import step_schema
    from sleuth.graphs.investigate.graph import tool_schemas

    if tool is None:
        return None
    options = {option["properties"]["tool"]["const"]: option
               for option in step_schema(tool_schemas(), inventory)["anyOf"]}
    if tool not in options:
        return f"there is no tool '{tool}'"
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(options[tool]).iter_errors({"tool": tool, "arguments": dict(arguments)}))
    return f"{tool}: {problem.message[:200]}" if problem else None


# -- the run -------------------------------------------------------------------------------------

def run_agent_benchmark(output: Path, *, settings: Settings, model: str | None = None,
                        questions: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
                        questions_path: Path = QUESTIONS, runtime: Any = None,
                        tool_mode: ToolMode = "auto") -> AgentBenchResult:
    """Ask the agent each question (or only the ids in ``questions``) for its first call, score, write files.

    ``model`` overrides the LLM (e.g. the packaged 1.5B); ``runtime`` is for tests. A failing
    endpoint, model file or configuration stops the run; any other expected failure of one
    question (e.g. an unparseable tool call) is recorded as that question's error and scores 0.
    """
    from sleuth.graphs import investigate
    from sleuth.graphs.runtime import Runtime

    question_set = load_questions(questions_path)
    chosen = select(question_set, questions)
    runtime = runtime or Runtime.from_settings(settings).for_agent(model)
    mode: ToolMode = tool_mode if tool_mode != "auto" else "schema" if investigate.use_schema(runtime, "auto") \
        else "native"
    inventory = investigate.Inventory.model_validate(question_set.inventory) if question_set.inventory else None
    say = progress or (lambda _: None)
    results: list[QuestionResult] = []
    for number, question in enumerate(chosen, 1):
        result = QuestionResult(id=question.id, question=question.question, expected_tool=question.tool)
        try:
            tool, arguments, first_token, seconds = investigate.first_tool_call(
                question.question, runtime=runtime, context=question_set.context, tool_mode=mode,
                inventory=inventory)
        except (EndpointError, ModelFileError, ConfigError):
            raise
        except SleuthError as exc:
            result.error = exc.one_line()
            result.failures = [f"error: {result.error}"]
        else:
            score = score_call(question, tool, arguments)
            result = result.model_copy(update={"invalid": invalid_call(tool, arguments, inventory),
                "tool": tool, "arguments": dict(arguments or {}), "tool_ok": score.tool_ok, "args_ok": score.args_ok,
                "failures": score.failures, "seconds_to_first_token": first_token, "seconds": seconds})
        results.append(result)
        verdict = "ok" if result.args_ok else ("tool ok, " if result.tool_ok else "") + "; ".join(result.failures)
        took = f" {result.seconds:.1f} s" if result.seconds is not None else ""
        say(f"[{number}/{len(chosen)}] {question.id}: {result.tool or 'no tool'} - {verdict}{took}")

    bench = AgentBenchResult(
        model=str(runtime.settings.llm.model), questions_file=str(questions_path), per_question=results,
        tool_mode=mode,
        environment={"date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
                     "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "context": question_set.context},
        **summarise(results))
    output.mkdir(parents=True, exist_ok=True)
    bench.outputs = {"result": str(output / "agent_bench.json"), "table": str(output / "agent_bench.md")}
    (output / "agent_bench.json").write_text(bench.model_dump_json(indent=2))
    (output / "agent_bench.md").write_text(markdown(bench))
    return bench


# -- tables --------------------------------------------------------------------------------------

def _pct(value: float) -> str:
    return f"{100 * value:.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_rows(result: AgentBenchResult) -> list[tuple[str, str, str, str, str]]:
    """(tool, questions, tool %, arguments %, called instead) per expected tool, then the total."""
    rows = [(t.tool, str(t.questions), _pct(t.tool_accuracy), _pct(t.argument_accuracy),
             ", ".join(f"{name} x{count}" for name, count in t.called_instead.items()) or "-")
            for t in result.per_tool]
    rows.append(("all", str(result.questions), _pct(result.tool_accuracy), _pct(result.argument_accuracy), ""))
    return rows


def latency_line(result: AgentBenchResult) -> str:
    first, total = result.first_token_s, result.seconds
    return (f"first token mean {_s(first.mean)} s, p50 {_s(first.p50)} s, p90 {_s(first.p90)} s; "
            f"whole first step mean {_s(total.mean)} s, p50 {_s(total.p50)} s, p90 {_s(total.p90)} s")


def markdown(result: AgentBenchResult) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"# Agent tool choice: {result.model} ({result.tool_mode} steps)", "",
             f"{result.questions} questions ({result.questions_file}); tool accuracy "
             f"{_pct(result.tool_accuracy)} %, argument accuracy {_pct(result.argument_accuracy)} %; "
             f"no-tool questions answered without a tool {result.no_tool_correct}/{result.no_tool_questions}; "
             f"questions with no call where one was expected {result.missed_calls}; errors {result.errors}.", "",
             f"Latency: {latency_line(result)}.", "",
             "| expected tool | questions | tool (%) | arguments (%) | called instead |",
             "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(cell(c) for c in row)} |" for row in summary_rows(result)]
    misses = [r for r in result.per_question if not r.args_ok]
    if misses:
        lines += ["", "## Misses", "", "| question | asked | expected | called | why |",
                  "| --- | --- | --- | --- | --- |"]
        for r in misses:
            called = r.tool or NO_TOOL
            if r.arguments:
                called += " " + ", ".join(f"{k}={v!r}" for k, v in r.arguments.items())
            lines.append(f"| {r.id} | {cell(r.question)} | {r.expected_tool or NO_TOOL} | {cell(called)} | "
                         f"{cell('; '.join(r.failures))} |")
    return "\n".join(lines) + "\n"
