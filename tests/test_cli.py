"""What a CLI user sees: streamed answers, and one line (never a traceback) when things fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ScriptedOpenAI, closed_port_url

SLEUTH = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"


def sleuth(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SLEUTH, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_ask_streams_the_answer_and_prints_the_trace_id(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ["Bicycles are not expected on this walkway."]
    result = sleuth("ask", "Is a bicycle normal here?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Bicycles are not expected on this walkway."
    assert scripted_openai.requests[0]["stream"] is True
    assert "trace " in result.stderr and "7 completion tokens" in result.stderr


def test_ask_with_a_json_schema_prints_validated_json(scripted_openai: ScriptedOpenAI,
                                                      tmp_path: Path) -> None:
    schema = tmp_path / "verdict.json"
    schema.write_text(json.dumps({"type": "object", "required": ["anomaly"],
                                  "properties": {"anomaly": {"type": "boolean"}}}))
    scripted_openai.replies = ['{"anomaly": true}']
    result = sleuth("ask", "Bicycle on the walkway?", "--json-schema", str(schema))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"anomaly": True}


def test_malformed_model_output_is_one_line(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ["sure! here you go"]
    result = sleuth("ask", "x", "--json-schema", '{"type": "object", "required": ["a"]}')
    assert_one_line_error(result, "no valid", "after a retry")
    assert result.returncode == 2


def test_endpoint_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/down")
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", url)
    monkeypatch.setenv("SLEUTH_LLM__NUM_RETRIES", "0")
    assert_one_line_error(sleuth("ask", "hello"), "cannot reach", url, "SLEUTH_LLM__API_BASE")


def test_bad_config_is_one_line(isolated_config: Path) -> None:
    (isolated_config / "sleuth.toml").write_text('[llm]\ntimeout_s = "later"\n')
    assert_one_line_error(sleuth("ask", "hello"), "llm.timeout_s", "sleuth.toml")


def test_missing_model_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEUTH_LLM_GGUF", str(tmp_path / "missing.gguf"))
    assert_one_line_error(sleuth("ask", "hello"), "missing.gguf", "does not exist")


def test_bad_schema_argument_is_one_line() -> None:
    assert_one_line_error(sleuth("ask", "hello", "--json-schema", "{not json"), "--json-schema")


def test_doctor_reports_a_broken_llm_truthfully(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/down")
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", url)
    monkeypatch.setenv("SLEUTH_LLM__NUM_RETRIES", "0")
    monkeypatch.setenv("SLEUTH_EMBEDDER__MODEL", "/nonexistent/embedder")
    result = sleuth("doctor", "--json")
    assert result.returncode == 1
    checks = {check["area"]: check for check in json.loads(result.stdout)}
    assert checks["llm"]["status"] == "fail" and url in checks["llm"]["detail"]
    assert checks["embedder"]["status"] == "fail"
    assert checks["gpu"]["status"] in ("ok", "info")
    assert "Traceback" not in result.stderr
