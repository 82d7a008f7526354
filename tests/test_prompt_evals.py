"""Prompt regression evals: cassettes, golden suites, thresholds and the CI gate.

The fast tests use a scripted endpoint (control flow only). The slow ones are the CI gate itself:
every suite replayed from the embedded model's committed cassettes, and the deduction and cloze
suites live on the embedded model, each against ``evals/thresholds.toml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.evals import prompt_suites
from sleuth.evals.prompt_suites import GOLDEN, LIVE_IN_CI, SUITES, run_suite, thresholds
from sleuth.llm.cassette import Cassette, CassetteMiss
from sleuth.llm.gateway import Gateway

from tests.conftest import HashEmbedder, ScriptedOpenAI, closed_port_url

ROOT = Path(__file__).resolve().parents[1]


def test_a_recorded_answer_replays_without_any_endpoint(scripted_openai: ScriptedOpenAI, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_openai.replies = ['{"equivalent": [true]}', '{"name": "list_scenes", "arguments": {}}']
    tools = [{"type": "function", "function": {"name": "list_scenes", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "same?"}]
    recorder = Gateway(load_settings())
    recorder.cassette = Cassette(tmp_path / "c.json", "record")
    first = recorder.chat(messages, max_tokens=20)
    streamed = list(recorder.stream_chat([{"role": "user", "content": "scenes?"}], tools=tools))
    recorder.cassette.save()
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", closed_port_url())  # nothing answers now
    player = Gateway(load_settings())
    player.cassette = Cassette(tmp_path / "c.json", "replay")
    assert player.chat(messages, max_tokens=20).text == first.text == '{"equivalent": [true]}'
    replayed = list(player.stream_chat([{"role": "user", "content": "scenes?"}], tools=tools))
    assert replayed[-1].tool_calls[0].name == streamed[-1].tool_calls[0].name == "list_scenes"
    assert player.usage.records[-1].provider == "cassette" and len(scripted_openai.requests) == 2
    with pytest.raises(CassetteMiss, match="no recorded answer") as missing:
        player.chat([{"role": "user", "content": "a changed prompt"}], max_tokens=20)
    assert "--record" in missing.value.one_line()


def test_the_golden_suites_have_the_cases_the_issue_asks_for() -> None:
    counts = {name: len(suite.cases()) for name, suite in SUITES.items()}
    assert counts["cloze_generation"] >= 30 and counts["cloze_completion"] >= 20 and counts["cloze_compare"] >= 20
    assert counts["rule_induction"] >= 10 and counts["rule_aggregation"] >= 10 and counts["tool_choice"] >= 30
    assert counts["deduction"] >= 60
    labels = [case["expected"] for case in SUITES["deduction"].cases()]
    assert labels.count("anomaly") == labels.count("normal")
    for name, suite in SUITES.items():
        ids = [case["id"] for case in suite.cases()]
        assert len(ids) == len(set(ids)), name
    assert set(thresholds()) == set(SUITES) and set(LIVE_IN_CI) <= set(SUITES)


def test_record_then_replay_gives_the_same_results_and_a_drop_fails_with_a_diff(
        scripted_openai: ScriptedOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.graphs.runtime import Runtime

    monkeypatch.setattr(prompt_suites, "CASSETTES", tmp_path / "cassettes")
    cases = [{"id": "a", "query": "a man running", "expected": {"VERB": ["running"], "COLOR": []}},
             {"id": "b", "query": "a red car", "expected": {"VERB": [], "COLOR": ["red"]}}]
    monkeypatch.setitem(SUITES, "cloze_generation", SUITES["cloze_generation"].__class__(
        "cloze_generation", "search.cloze.generate", lambda: cases, prompt_suites.run_cloze_generation))
    scripted_openai.replies = ["not json"]  # the lexicon still finds both: 2/2
    settings = load_settings()
    runtime = Runtime(settings=settings, gateway=Gateway(settings), embedder=HashEmbedder())
    recorded = run_suite("cloze_generation", runtime=runtime, mode="record", limits={"cloze_generation": 1.0})
    assert recorded.passed == 2 and recorded.ok and recorded.llm_calls == 4  # one retry per case
    calls = len(scripted_openai.requests)
    replayed = run_suite("cloze_generation", runtime=runtime, mode="replay", limits={"cloze_generation": 1.0})
    assert replayed.passed == 2 and len(scripted_openai.requests) == calls  # no model call
    cases[1]["expected"] = {"VERB": [], "COLOR": ["blue"]}  # the case changed: now it fails
    dropped = run_suite("cloze_generation", runtime=runtime, mode="replay", limits={"cloze_generation": 1.0})
    assert not dropped.ok and [f.id for f in dropped.failures] == ["b"]
    diff = prompt_suites.failure_diff(dropped)
    assert diff[0].startswith("cloze_generation/b: expected") and diff[1].startswith("  - recorded: passed")
    assert '"red"' in diff[2]


def test_an_unknown_suite_is_one_line(tmp_path: Path) -> None:
    from sleuth.graphs.runtime import Runtime

    settings = load_settings()
    with pytest.raises(SleuthError, match="no prompt suite 'nope'"):
        run_suite("nope", runtime=Runtime(settings=settings, gateway=Gateway(settings), embedder=HashEmbedder()))


def _eval_prompts(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLEUTH_LLM")}
    return subprocess.run([sys.executable, "-m", "sleuth.cli.main", "eval", "prompts", *args], capture_output=True,
                          text=True, timeout=1200, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_ci_gate_every_suite_replayed_from_the_embedded_models_cassettes(tmp_path: Path) -> None:
    result = _eval_prompts("--replay", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = {entry["suite"]: entry for entry in json.loads((tmp_path / "prompt_evals.json").read_text())}
    assert set(saved) == set(SUITES) and all(entry["ok"] for entry in saved.values())


@pytest.mark.slow
def test_ci_gate_deduction_and_cloze_suites_live_on_the_embedded_model(tmp_path: Path) -> None:
    result = _eval_prompts(*[f"--suite={name}" for name in LIVE_IN_CI], "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_golden_files_live_in_the_package() -> None:
    assert GOLDEN.is_dir() and (ROOT / "evals" / "thresholds.toml").is_file()


def test_the_validation_check_measures_the_verdict_probability_on_the_golden_suite(tmp_path: Path) -> None:
    """python -m sleuth.evals.validation: from the recorded deduction answers (no model started)."""
    from sleuth.evals.validation import main

    assert main(["--replay", "--output", str(tmp_path)]) == 0
    (written,) = tmp_path.glob("validation-*.json")
    result = json.loads(written.read_text())
    assert result["cases"] + result["failed"] == 72 and 0 < result["anomalous"] < result["cases"]
    assert 0 <= result["auc"] <= 100
    kept = [level["anomalies_kept"] for level in result["by_level"].values()]
    dismissed = [level["normals_dismissed"] for level in result["by_level"].values()]
    assert kept == sorted(kept, reverse=True) and dismissed == sorted(dismissed)  # a higher level dismisses more
