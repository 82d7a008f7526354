"""Prompt regression evals: golden suites per agent, run live, recorded as cassettes, or replayed.

Each suite is a JSON file of cases in ``evals/golden/`` (the tool-choice suite reuses
``evals/agent_questions.json``) and a runner that calls the real agent function and checks its
answer: an exact field, set equality, or semantic equivalence through the text embedder.

- ``live``: against the configured model (default: the embedded one).
- ``record``: live, and every model answer is stored in ``evals/cassettes/<model>/<suite>.json``
  together with the per-case results (the baseline a later failure is compared with).
- ``replay``: the cassette answers; no model is started. A prompt or case changed since the
  recording shows up as a one-line :class:`~sleuth.llm.cassette.CassetteMiss`.

Pass-rate thresholds per suite live in ``evals/thresholds.toml``; a suite under its threshold
fails (``sleuth eval prompts`` exits 1) and its failing cases are printed against the recording.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sleuth.errors import SleuthError
from sleuth.graphs.runtime import Runtime

if TYPE_CHECKING:
    from sleuth.agents.schemas import RuleSet

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
CASSETTES = HERE / "cassettes"
THRESHOLDS = HERE / "thresholds.toml"
Mode = Literal["live", "record", "replay"]
Progress = Callable[[str], None]


class CaseResult(BaseModel):
    id: str
    passed: bool
    expected: Any = None
    got: Any = None
    why: str | None = None


class SuiteResult(BaseModel):
    suite: str
    prompt: str = Field(description="The prompt id@version the suite exercises ('-' for none).")
    model: str
    mode: Mode
    cases: int
    passed: int
    pass_rate: float
    threshold: float | None
    ok: bool
    seconds: float
    llm_calls: int
    failures: list[CaseResult] = Field(default_factory=list)
    results: list[CaseResult] = Field(default_factory=list)


@dataclass(frozen=True)
class Suite:
    name: str
    prompt: str | None  # prompt id; None: the agent makes no model call
    cases: Callable[[], list[dict[str, Any]]]
    run: Callable[[dict[str, Any], Runtime], CaseResult]


# -- checks -------------------------------------------------------------------------------------

def _words(values: Sequence[str]) -> list[str]:
    return sorted(value.strip().lower() for value in values)


def semantic_matches(expected: Sequence[str], got: Sequence[str], embedder: Any, threshold: float) -> list[int | None]:
    """For each expected text, the index of a distinct ``got`` text at cosine >= threshold (greedy, best first)."""
    if not expected or not got:
        return [None] * len(expected)
    similarity = np.asarray(embedder(list(expected))) @ np.asarray(embedder(list(got))).T
    matched: list[int | None] = [None] * len(expected)
    used: set[int] = set()
    for flat in np.argsort(-similarity, axis=None):
        row, column = divmod(int(flat), similarity.shape[1])
        if similarity[row, column] < threshold:
            break
        if matched[row] is None and column not in used:
            matched[row] = column
            used.add(column)
    return matched


# -- case runners -------------------------------------------------------------------------------

def _cases(file: str) -> Callable[[], list[dict[str, Any]]]:
    def load() -> list[dict[str, Any]]:
        path = GOLDEN / file
        try:
            return list(json.loads(path.read_text())["cases"])
        except (OSError, ValueError, KeyError) as exc:
            raise SleuthError(f"cannot read the golden suite {path}: {exc}", hint="fix the JSON file") from None
    return load


def run_cloze_generation(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.cloze import generate_cloze

    cloze = generate_cloze(case["query"], gateway=runtime.gateway)
    got = {kind: _words([s.answer for s in cloze.slots if s.kind == kind]) for kind in ("VERB", "COLOR")}
    expected = {kind: _words(case["expected"].get(kind, [])) for kind in ("VERB", "COLOR")}
    return CaseResult(id=case["id"], passed=got == expected, expected=expected, got=got)


def run_cloze_completion(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.cloze import Cloze, complete_cloze

    cloze = Cloze.model_validate(case["cloze"])
    completion = complete_cloze(cloze, case["id"], gateway=runtime.gateway, description=case["description"])
    expected = {name: [word if word == "UNKNOWN" else word.lower() for word in words]
                for name, words in case["expected"].items()}
    wrong = [name for name, words in expected.items() if completion.fills.get(name) not in words]
    return CaseResult(id=case["id"], passed=not wrong, expected=expected, got=completion.fills,
                      why=f"wrong: {', '.join(wrong)}" if wrong else completion.error)


def run_cloze_compare(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.cloze import Cloze, Completion, Slot, compare

    name = f"{case['kind']}_1"
    cloze = Cloze(query=case["query_word"], text=f"<{case['kind']}>_1",
                  slots=[Slot(name=name, kind=case["kind"], answer=case["query_word"].lower())])
    filled = case["filled"] if case["filled"] == "UNKNOWN" else case["filled"].lower()
    (compared,) = compare(cloze, [Completion(item_id=case["id"], fills={name: filled})],
                          gateway=runtime.gateway)
    got = compared.matches[name]
    return CaseResult(id=case["id"], passed=got == case["expected"], expected=case["expected"], got=got)


def case_rules(case: dict[str, Any]) -> RuleSet:
    """The scene's rules of a deduction case, as a RuleSet."""
    from sleuth.agents.schemas import Rule, RuleSet

    return RuleSet(scene=case.get("scene", "default"), rules=[
        Rule(text=text, kind=kind) for kind in ("normal", "anomaly") for text in case["rules"][kind]])


def run_deduction(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.deduction import deduce_frame

    try:
        answer = deduce_frame(case["caption"], "(none)", case_rules(case), runtime.gateway).answer
    except SleuthError as exc:  # an answer that stayed invalid is a failed case, not a failed suite
        return CaseResult(id=case["id"], passed=False, expected=case["expected"], got=None, why=exc.one_line())
    got = "anomaly" if answer.anomaly else "normal"
    return CaseResult(id=case["id"], passed=got == case["expected"], expected=case["expected"], got=got,
                      why=answer.reason[:200])


def run_rule_induction(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.rules import induce_rules

    try:
        rules = induce_rules(case["captions"], scene=case.get("scene", "default"), gateway=runtime.gateway)
    except SleuthError as exc:
        return CaseResult(id=case["id"], passed=False, why=exc.one_line())
    normal = [rule.text for rule in rules.normal]
    anomaly = [rule.text for rule in rules.anomaly]
    found_normal = semantic_matches(case["expected_normal"], normal, runtime.embedder, 0.5)
    found_anomaly = semantic_matches(case["expected_anomaly"], anomaly, runtime.embedder, 0.5)
    share = sum(index is not None for index in found_normal) / max(len(found_normal), 1)
    passed = share >= 0.5 and any(index is not None for index in found_anomaly)
    return CaseResult(id=case["id"], passed=passed,
                      expected={"normal": case["expected_normal"], "anomaly": case["expected_anomaly"]},
                      got={"normal": normal, "anomaly": anomaly},
                      why=f"{share:.0%} of expected normal rules found; "
                          f"{sum(i is not None for i in found_anomaly)} expected anomaly rule(s) found")


def run_rule_aggregation(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.agents.rules import aggregate_rules
    from sleuth.agents.schemas import Rule, RuleSet

    rulesets = [RuleSet(rules=[Rule(text=r["text"], kind=r["kind"]) for r in ruleset]) for ruleset in case["rulesets"]]
    merged = aggregate_rules(rulesets, embedder=runtime.embedder)
    got = [{"text": rule.text, "kind": rule.kind} for rule in merged.rules]
    passed = len(got) == len(case["expected"])
    for kind in ("normal", "anomaly"):
        want = [r["text"] for r in case["expected"] if r["kind"] == kind]
        have = [r["text"] for r in got if r["kind"] == kind]
        passed = passed and len(want) == len(have) and \
            all(index is not None for index in semantic_matches(want, have, runtime.embedder, 0.75))
    return CaseResult(id=case["id"], passed=passed, expected=case["expected"], got=got)


def _tool_questions() -> list[dict[str, Any]]:
    from sleuth.evals.agent_bench import load_questions

    questions = load_questions()
    return [{**question.model_dump(), "context": questions.context, "inventory": questions.inventory}
            for question in questions.questions]


def run_tool_choice(case: dict[str, Any], runtime: Runtime) -> CaseResult:
    from sleuth.evals.agent_bench import AgentQuestion, score_call
    from sleuth.graphs.investigate import Inventory, first_tool_call

    question = AgentQuestion.model_validate({key: value for key, value in case.items()
                                             if key not in ("context", "inventory")})
    inventory = Inventory.model_validate(case["inventory"]) if case.get("inventory") else None
    tool, arguments, _, _ = first_tool_call(question.question, runtime=runtime, context=case["context"],
                                            inventory=inventory)
    score = score_call(question, tool, arguments)
    return CaseResult(id=case["id"], passed=score.args_ok,
                      expected={"tool": question.tool, "args": {k: v.model_dump() for k, v in question.args.items()}},
                      got={"tool": tool, "args": arguments}, why="; ".join(score.failures) or None)


SUITES: dict[str, Suite] = {suite.name: suite for suite in [
    Suite("cloze_generation", "search.cloze.generate", _cases("cloze_generation.json"), run_cloze_generation),
    Suite("cloze_completion", "search.cloze.complete", _cases("cloze_completion.json"), run_cloze_completion),
    Suite("cloze_compare", "search.cloze.compare", _cases("cloze_compare.json"), run_cloze_compare),
    Suite("rule_induction", "rules.induction", _cases("rule_induction.json"), run_rule_induction),
    Suite("rule_aggregation", None, _cases("rule_aggregation.json"), run_rule_aggregation),
    Suite("deduction", "deduction.frame", _cases("deduction.json"), run_deduction),
    Suite("tool_choice", "investigate.system", _tool_questions, run_tool_choice),
]}
LIVE_IN_CI = ("deduction", "cloze_generation", "cloze_completion", "cloze_compare")


# -- running ------------------------------------------------------------------------------------

def thresholds(path: Path = THRESHOLDS) -> dict[str, float]:
    try:
        return {name: float(value) for name, value in tomllib.loads(path.read_text())["suites"].items()}
    except (OSError, ValueError, KeyError) as exc:
        raise SleuthError(f"cannot read the thresholds {path}: {exc}", hint="fix evals/thresholds.toml") from None


def cassette_path(model: str, suite: str) -> Path:
    return CASSETTES / model.replace("/", "_") / f"{suite}.json"


def baseline(model: str, suite: str) -> dict[str, CaseResult]:
    """The per-case results stored with the recording (empty when there is none)."""
    path = cassette_path(model, suite).with_suffix(".results.json")
    if not path.is_file():
        return {}
    return {entry["id"]: CaseResult.model_validate(entry) for entry in json.loads(path.read_text())}


def run_suite(name: str, *, runtime: Runtime, mode: Mode = "live", limits: dict[str, float] | None = None,
              progress: Progress | None = None) -> SuiteResult:
    from sleuth.llm.cassette import Cassette
    from sleuth.prompts import load_prompt

    if name not in SUITES:
        raise SleuthError(f"no prompt suite '{name}'", hint=f"suites: {', '.join(SUITES)}")
    suite = SUITES[name]
    model = runtime.settings.llm.model or "llm"
    gateway = runtime.gateway
    cassette = None
    if mode != "live" and suite.prompt is not None:
        cassette = Cassette(cassette_path(model, name), "record" if mode == "record" else "replay")
    gateway.cassette = cassette
    started, first = time.monotonic(), len(gateway.usage.records)
    results = []
    try:
        for case in suite.cases():
            results.append(suite.run(case, runtime))
            if progress:
                mark = "ok" if results[-1].passed else "FAIL"
                progress(f"[{name} {len(results)}] {case['id']}: {mark}")
    finally:
        gateway.cassette = None
    if cassette is not None and mode == "record":
        cassette.save()
        cassette_path(model, name).with_suffix(".results.json").write_text(
            json.dumps([result.model_dump(mode="json") for result in results], indent=1) + "\n")
    passed = sum(result.passed for result in results)
    rate = passed / len(results) if results else 0.0
    limit = (limits if limits is not None else thresholds()).get(name)
    prompt = load_prompt(suite.prompt).ref if suite.prompt else "-"
    return SuiteResult(suite=name, prompt=prompt, model=model, mode=mode, cases=len(results), passed=passed,
                       pass_rate=round(rate, 4), threshold=limit, ok=limit is None or rate >= limit,
                       seconds=round(time.monotonic() - started, 2),
                       llm_calls=len(gateway.usage.records) - first,
                       failures=[result for result in results if not result.passed], results=results)


def failure_diff(result: SuiteResult) -> list[str]:
    """Each failing case against the recorded run: what it expected, what it got then and now."""
    recorded = baseline(result.model, result.suite)
    lines = []
    for case in result.failures:
        before = recorded.get(case.id)
        then = "not recorded" if before is None else ("passed" if before.passed else "failed") + \
            f", got {json.dumps(before.got, default=str)}"
        lines += [f"{result.suite}/{case.id}: expected {json.dumps(case.expected, default=str)}",
                  f"  - recorded: {then}",
                  f"  + now:      got {json.dumps(case.got, default=str)}" + (f" ({case.why})" if case.why else "")]
    return lines
