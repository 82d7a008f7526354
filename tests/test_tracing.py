"""Spans follow the GenAI semantic conventions; API keys never reach logs or spans."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import litellm
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sleuth import telemetry
from sleuth.llm.gateway import Gateway

from tests.conftest import ScriptedOpenAI

ASK = [{"role": "user", "content": "Is a cart on the walkway normal?"}]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.add_span_exporter(exporter)
    telemetry.set_capture_content(False)
    yield exporter
    exporter.shutdown()
    telemetry.set_capture_content(False)


def test_chat_span_has_the_genai_attributes(scripted_openai: ScriptedOpenAI,
                                            spans: InMemorySpanExporter) -> None:
    scripted_openai.replies = ["No, carts are not allowed."]
    Gateway().chat(ASK, max_tokens=40)
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert span.name == "chat openai/scripted"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "openai/scripted"
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.request.max_tokens"] == 40
    assert "gen_ai.input.messages" not in attributes  # content is off by default


def test_each_call_is_instrumented_once(scripted_openai: ScriptedOpenAI,
                                        spans: InMemorySpanExporter) -> None:
    gateway = Gateway()
    gateway.chat(ASK)
    list(gateway.stream(ASK))
    chat_spans = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert len(chat_spans) == 2
    assert not [cb for cb in litellm.callbacks + litellm.success_callback if "otel" in str(cb).lower()]


def test_message_content_is_recorded_only_when_enabled(scripted_openai: ScriptedOpenAI,
                                                       spans: InMemorySpanExporter) -> None:
    telemetry.set_capture_content(True)
    scripted_openai.replies = ["Carts are unusual here."]
    Gateway().chat(ASK)
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert json.loads(span.attributes["gen_ai.input.messages"]) == ASK
    assert "Carts are unusual" in span.attributes["gen_ai.output.messages"]


def test_tool_and_agent_spans_share_the_request_trace(scripted_openai: ScriptedOpenAI,
                                                      spans: InMemorySpanExporter) -> None:
    with telemetry.request_span("sleuth test") as root:
        with telemetry.agent_span("deduce"):
            with telemetry.tool_span("retriever"):
                pass
            Gateway().chat(ASK)
        trace_id = telemetry.current_trace_id()
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert finished["invoke_agent deduce"].attributes["gen_ai.operation.name"] == "invoke_agent"
    assert finished["invoke_agent deduce"].attributes["gen_ai.agent.name"] == "deduce"
    assert finished["execute_tool retriever"].attributes["gen_ai.operation.name"] == "execute_tool"
    assert finished["execute_tool retriever"].attributes["gen_ai.tool.name"] == "retriever"
    assert trace_id == format(root.get_span_context().trace_id, "032x")
    assert {format(s.context.trace_id, "032x") for s in finished.values()} == {trace_id}
    chat = finished["chat openai/scripted"]
    assert chat.parent.span_id == finished["invoke_agent deduce"].context.span_id


def test_failed_tool_span_records_the_error_type(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError):
        with telemetry.tool_span("captioner"):
            raise ValueError("corrupt frame")
    (span,) = spans.get_finished_spans()
    assert span.attributes["error.type"] == "ValueError"
    assert span.status.status_code.name == "ERROR"


def test_api_key_never_reaches_logs_or_spans(scripted_openai: ScriptedOpenAI,
                                             spans: InMemorySpanExporter,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-9f8e7d6c5b4a-never-log-me"
    monkeypatch.setenv("SLEUTH_LLM__API_KEY_ENV", "SCRIPTED_PROVIDER_KEY")
    monkeypatch.setenv("SCRIPTED_PROVIDER_KEY", secret)
    telemetry.set_capture_content(True)  # even with content capture on
    caplog.set_level(logging.DEBUG)
    scripted_openai.replies = ["fine"]
    gateway = Gateway()
    gateway.chat(ASK)
    list(gateway.stream(ASK))
    assert scripted_openai.headers[0]["authorization"] == f"Bearer {secret}"  # the key is used
    assert secret not in caplog.text
    for span in spans.get_finished_spans():
        assert secret not in json.dumps(dict(span.attributes or {}), default=str)
        assert all(secret not in str(event.attributes) for event in span.events)
    assert secret not in repr(gateway.settings) and secret not in repr(gateway.endpoint())


def test_a_stream_closed_early_still_ends_its_span(scripted_openai: ScriptedOpenAI,
                                                   spans: InMemorySpanExporter) -> None:
    scripted_openai.replies = ["one two three four"]
    stream = Gateway().stream(ASK)
    assert next(stream) == "one"
    stream.close()
    assert [s.name for s in spans.get_finished_spans() if s.name.startswith("chat")] == ["chat openai/scripted"]
