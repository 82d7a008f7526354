"""OpenTelemetry tracing with the GenAI semantic conventions.

Span names and attributes follow https://opentelemetry.io/docs/specs/semconv/gen-ai/:
``chat <model>`` for each LLM call, ``execute_tool <name>`` for tool calls and
``invoke_agent <name>`` for graph nodes. The gateway opens the ``chat`` span itself and LiteLLM's
own OpenTelemetry callback stays off, so every call is instrumented exactly once.
Message content is recorded only when ``tracing.capture_content`` is on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sleuth.config import TracingConfig
from sleuth.errors import shorten

# GenAI semantic-convention attribute names, in one place.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
AGENT_NAME = "gen_ai.agent.name"
ERROR_TYPE = "error.type"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_capture_content = False
_installed: set[tuple[int, str, str | None]] = set()  # (provider, exporter, endpoint) configured

P = ParamSpec("P")
R = TypeVar("R")


def _ensure_provider(service_name: str = "sleuth") -> TracerProvider:
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            trace.set_tracer_provider(_provider)
        return _provider


class _Stderr:
    """The process's current ``sys.stderr``, looked up at each write (a test's captured stream,
    a redirected one) rather than the one there was when the exporter was made."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(config: TracingConfig) -> None:
    """Install the exporter the configuration asks for (off, console or OTLP/HTTP), once per
    process. The console exporter writes to stderr: stdout carries the command's output only."""
    global _capture_content
    provider = _ensure_provider(config.service_name)
    _capture_content = config.capture_content
    installed = (id(provider), config.exporter, config.endpoint)
    with _lock:
        if config.exporter == "off" or installed in _installed:
            return
        _installed.add(installed)
    if config.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=_Stderr())))
    elif config.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=config.endpoint) if config.endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach another processor (tests use an in-memory exporter)."""
    _ensure_provider().add_span_processor(processor)


def add_span_exporter(exporter: SpanExporter) -> None:
    add_span_processor(SimpleSpanProcessor(exporter))


def set_capture_content(enabled: bool) -> None:
    global _capture_content
    _capture_content = enabled


def capture_content() -> bool:
    return _capture_content


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def tracer() -> trace.Tracer:
    return _ensure_provider().get_tracer("sleuth")


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def request_span(name: str, **attributes: Any) -> Iterator[Span]:
    """The root span of one user request (a CLI command, an API call)."""
    with tracer().start_as_current_span(name, attributes=_clean(attributes)) as span:
        yield span


@contextlib.contextmanager
def chat_span(model: str, provider: str, *, max_tokens: int | None = None,
              temperature: float | None = None) -> Iterator[Span]:
    """``chat <model>``: one LLM/VLM call. The caller records usage with :func:`record_usage`."""
    attributes = {OPERATION: "chat", PROVIDER: provider, REQUEST_MODEL: model,
                  REQUEST_MAX_TOKENS: max_tokens, REQUEST_TEMPERATURE: temperature}
    with tracer().start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                        attributes=_clean(attributes),
                                        record_exception=False) as span:
        yield span


def record_usage(span: Span, *, response_model: str | None, input_tokens: int | None,
                 output_tokens: int | None, finish_reasons: list[str] | None) -> None:
    span.set_attributes(_clean({RESPONSE_MODEL: response_model, INPUT_TOKENS: input_tokens,
                                OUTPUT_TOKENS: output_tokens,
                                FINISH_REASONS: finish_reasons or None}))


def record_messages(span: Span, *, inputs: Any = None, outputs: Any = None) -> None:
    """Record message content, only when capture is enabled in the configuration."""
    if not _capture_content:
        return
    if inputs is not None:
        span.set_attribute(INPUT_MESSAGES, json.dumps(inputs, default=str))
    if outputs is not None:
        span.set_attribute(OUTPUT_MESSAGES, json.dumps(outputs, default=str))


def record_error(span: Span, error: BaseException) -> None:
    span.set_attribute(ERROR_TYPE, type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, shorten(str(error), 200)))


@contextlib.contextmanager
def tool_span(name: str) -> Iterator[Span]:
    """``execute_tool <name>``: one call of a model tool (retriever, proposer, captioner...)."""
    with _operation_span(f"execute_tool {name}", {OPERATION: "execute_tool", TOOL_NAME: name}) as span:
        yield span


@contextlib.contextmanager
def agent_span(name: str) -> Iterator[Span]:
    """``invoke_agent <name>``: one graph node / agent step."""
    with _operation_span(f"invoke_agent {name}", {OPERATION: "invoke_agent", AGENT_NAME: name}) as span:
        yield span


@contextlib.contextmanager
def _operation_span(name: str, attributes: dict[str, Any]) -> Iterator[Span]:
    with tracer().start_as_current_span(name, attributes=attributes, record_exception=False,
                                        set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            record_error(span, exc)
            raise


def traced_tool(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`tool_span`."""
    return _decorator(tool_span, name)


def traced_agent(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`agent_span` for LangGraph node functions."""
    return _decorator(agent_span, name)


def _decorator(span_factory: Callable[[str], contextlib.AbstractContextManager[Span]],
               name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with span_factory(name):
                return function(*args, **kwargs)
        return inner
    return wrap


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}
