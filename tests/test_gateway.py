"""Gateway control flow against a scripted endpoint: structured output, retries, errors, tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from sleuth.config import load_settings
from sleuth.errors import EndpointError, EndpointTimeout, StructuredOutputError
from sleuth.llm.gateway import Gateway, image_part, user_message

from tests.conftest import ScriptedOpenAI, closed_port_url


class Verdict(BaseModel):
    anomaly: bool
    reason: str = Field(min_length=3)


ASK = [{"role": "user", "content": "A bicycle on the walkway: anomaly?"}]


def test_structured_output_recovers_with_one_retry(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ['```json\n{"anomaly": "perhaps"}\n```',
                               '{"anomaly": true, "reason": "bikes are not allowed"}']
    gateway = Gateway()
    verdict = gateway.structured(ASK, Verdict)
    assert verdict == Verdict(anomaly=True, reason="bikes are not allowed")
    assert len(scripted_openai.requests) == 2
    first, retry = scripted_openai.requests
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["anomaly", "reason"]
    feedback = retry["messages"][-1]["content"]
    assert "anomaly" in feedback and "invalid" in feedback  # the validation error goes back
    assert retry["messages"][-2] == {"role": "assistant", "content": '```json\n{"anomaly": "perhaps"}\n```'}
    assert gateway.usage.totals()["calls"] == 2


def test_structured_output_fails_cleanly_after_the_retry(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ["I think it is an anomaly."]
    with pytest.raises(StructuredOutputError) as caught:
        Gateway().structured(ASK, Verdict)
    error = caught.value
    assert error.raw == "I think it is an anomaly."
    assert "not valid JSON" in error.errors
    assert "\n" not in str(error)
    assert len(scripted_openai.requests) == 2


def test_structured_json_validates_a_raw_schema(scripted_openai: ScriptedOpenAI) -> None:
    schema = {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0}},
              "required": ["count"]}
    scripted_openai.replies = ['{"count": -1}', '{"count": 3}']
    assert Gateway().structured_json(ASK, schema) == {"count": 3}
    assert "minimum" in scripted_openai.requests[1]["messages"][-1]["content"] or \
        "-1" in scripted_openai.requests[1]["messages"][-1]["content"]


def test_stream_yields_pieces_and_records_usage(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ["a cyclist crosses the walkway"]
    gateway = Gateway()
    pieces = list(gateway.stream(ASK))
    assert "".join(pieces) == "a cyclist crosses the walkway"
    assert len(pieces) > 1
    (record,) = gateway.usage.records
    assert (record.prompt_tokens, record.completion_tokens) == (11, 7)
    assert record.ttft_s is not None and record.ttft_s <= record.latency_s


def test_tool_calls_written_as_text_are_recovered(scripted_openai: ScriptedOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "detect", "description": "Detect anomalies",
              "parameters": {"type": "object", "properties": {"video": {"type": "string"}}}}}]
    scripted_openai.replies = ['<tool_call>\n{"name": "detect", "arguments": {"video": "cam3.mp4"}}\n</tool_call>']
    result = Gateway().chat([{"role": "user", "content": "check cam3"}], tools=tools)
    assert [(call.name, call.arguments) for call in result.tool_calls] == [("detect", {"video": "cam3.mp4"})]
    assert scripted_openai.requests[0]["tools"][0]["function"]["name"] == "detect"


def test_images_travel_as_base64_data_urls(scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    part = image_part(frame)
    assert part["image_url"]["url"].startswith("data:image/png;base64,")
    Gateway().chat([user_message("what is here?", [frame])])
    content = scripted_openai.requests[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is here?"}
    assert content[1]["image_url"]["url"] == part["image_url"]["url"]


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/nothing")
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", url)
    monkeypatch.setenv("SLEUTH_LLM__NUM_RETRIES", "0")
    gateway = Gateway()
    with pytest.raises(EndpointError) as caught:
        gateway.chat(ASK)
    assert url in str(caught.value) and "\n" not in str(caught.value)
    assert gateway.usage.records[-1].ok is False


def test_slow_endpoint_times_out(scripted_openai: ScriptedOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_openai.delay_s = 3
    monkeypatch.setenv("SLEUTH_LLM__TIMEOUT_S", "0.5")
    with pytest.raises(EndpointTimeout, match="timed out"):
        Gateway().chat(ASK)


def test_fallback_model_answers_when_the_primary_fails(scripted_openai: ScriptedOpenAI,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", closed_port_url())
    monkeypatch.setenv("SLEUTH_LLM__FALLBACKS", json.dumps(["openai/scripted-backup"]))
    monkeypatch.setenv("OPENAI_API_BASE", scripted_openai.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback")
    scripted_openai.replies = ["backup answer"]
    assert Gateway(load_settings()).chat(ASK).text == "backup answer"
    assert scripted_openai.requests[0]["model"] == "scripted-backup"
