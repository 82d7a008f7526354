"""The one module through which every LLM and VLM call in Sleuth goes.

Built on LiteLLM's Router. A role's ``timeout_s`` is the total one model may take: quick
failures are retried within it, so retries never multiply it; each fallback model then gets its
own (:func:`_complete`). A failure is reported as what it is (:func:`_endpoint_error`):
unreachable, timed out, answered but not as a chat endpoint (or HTTP 5xx), or key refused; one
line that names the URL and the model, the original exception kept on the error's ``cause``.
A role (``llm``, ``vlm``) maps to an endpoint: the packaged GGUF served in-process by llama.cpp,
or any LiteLLM model string with a base URL. Every call is traced once (``chat <model>`` span)
and recorded in :class:`UsageLog` (model, latency, time to first token, prompt/completion tokens).

Structured output: pass a pydantic model, get a validated instance. The JSON schema travels as
``response_format``; llama.cpp turns it into a grammar, so the local model cannot leave it. An
answer that still fails validation is retried once with the validation error, then
:class:`~sleuth.errors.StructuredOutputError` is raised.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import mimetypes
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# LiteLLM fetches a model price map from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402
from sleuth import telemetry  # noqa: E402
from sleuth.config import LLMRole, ModelRole, Settings, load_settings  # noqa: E402
from sleuth.errors import (  # noqa: E402
    AuthenticationError,
    ConfigError,
    EndpointBadResponse,
    EndpointError,
    EndpointTimeout,
    EndpointUnreachable,
    StructuredOutputError,
    shorten,
)
from sleuth.llm import packaged, server  # noqa: E402
from sleuth.llm.cassette import Cassette  # noqa: E402

litellm.suppress_debug_info = True
litellm.telemetry = False
litellm.drop_params = True
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]
LOCAL_PROVIDER = "llama.cpp"


@dataclass(frozen=True)
class Endpoint:
    """Where a role's calls go, resolved from the configuration."""

    role: str
    model: str  # LiteLLM model string
    display_name: str  # the name that goes on spans and records
    provider: str
    api_base: str | None
    local: bool
    timeout_s: float
    num_retries: int
    fallbacks: tuple[str, ...]


@dataclass(frozen=True)
class CallRecord:
    """One LLM call: what it cost."""

    role: str
    model: str
    provider: str
    latency_s: float
    ttft_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    finish_reason: str | None
    ok: bool


@dataclass
class UsageLog:
    """Thread-safe list of :class:`CallRecord` with totals, for benchmarks and cost reports."""

    records: list[CallRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)

    def totals(self) -> dict[str, float]:
        with self._lock:
            records = list(self.records)
        return {
            "calls": len(records),
            "failed_calls": sum(not r.ok for r in records),
            "prompt_tokens": sum(r.prompt_tokens for r in records),
            "completion_tokens": sum(r.completion_tokens for r in records),
            "latency_s": round(sum(r.latency_s for r in records), 3),
        }


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatResult:
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    record: CallRecord
    logprobs: list[dict[str, Any]] | None = None  # per token: token, logprob, top_logprobs


def image_part(image: str | Path | bytes, mime: str | None = None) -> dict[str, Any]:
    """An image as an OpenAI-style content part (base64 data URL) for VLM messages."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        mime = mime or mimetypes.guess_type(path.name)[0] or "image/jpeg"
        data = path.read_bytes()
    else:
        data, mime = image, mime or "image/jpeg"
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def user_message(text: str, images: Sequence[str | Path | bytes] = ()) -> Message:
    """A user message with optional images."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        *(image_part(image) for image in images)]}


class Gateway:
    """Chat, streaming, tool calls and structured output for every role, through LiteLLM."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.usage = UsageLog()
        self._routers: dict[str, tuple[Endpoint, litellm.Router]] = {}
        self._lock = threading.Lock()
        self.cassette: Cassette | None = None  # record or replay answers (prompt evals)

    # -- endpoints ---------------------------------------------------------------------------
    def _role_config(self, role: str) -> ModelRole:
        config = getattr(self.settings, role, None)
        if not isinstance(config, ModelRole):
            raise ConfigError(f"unknown model role '{role}'", hint="use 'llm' or 'vlm'")
        if not config.model and not (isinstance(config, LLMRole) and config.gguf):
            raise ConfigError(f"no model is configured for the '{role}' role",
                              hint=f"set SLEUTH_{role.upper()}__MODEL or [{role}] model in sleuth.toml")
        return config

    def endpoint(self, role: str = "llm") -> Endpoint:
        """Resolve (and for the embedded model, start) the endpoint of ``role``; a replaying cassette
        starts nothing."""
        if self._replaying():
            return self._resolve(role, start=False)
        return self._router(role)[0]

    def _replaying(self) -> bool:
        return self.cassette is not None and self.cassette.mode == "replay"

    def _resolve(self, role: str, *, start: bool = True) -> Endpoint:
        config = self._role_config(role)
        fallbacks = tuple(config.fallbacks)
        if embedded(config):
            assert isinstance(config, LLMRole)
            if not start:  # described, not served (a replaying cassette)
                name = Path(config.gguf).stem if config.gguf else str(config.model)
                return Endpoint(role, f"openai/{name}", name, LOCAL_PROVIDER, None, True, config.timeout_s, 0,
                                fallbacks)
            served = server.ensure_started(config, self.settings.cache_dir)
            return Endpoint(role, f"openai/{served.name}", served.name, LOCAL_PROVIDER,
                            served.api_base, True, config.timeout_s, min(config.num_retries, 1),
                            fallbacks)
        assert config.model is not None
        try:
            _, provider, _, _ = litellm.get_llm_provider(config.model, api_base=config.api_base)
        except Exception:  # LiteLLM raises BadRequestError for unknown provider prefixes
            raise ConfigError(f"'{config.model}' is not a LiteLLM model string",
                              hint="use provider/model, e.g. openai/gpt-4o-mini or "
                              "ollama/qwen2.5, or a packaged name") from None
        return Endpoint(role, config.model, config.model, provider, config.api_base, False,
                        config.timeout_s, config.num_retries, fallbacks)

    def _router(self, role: str) -> tuple[Endpoint, litellm.Router]:
        with self._lock:
            if role not in self._routers:
                endpoint = self._resolve(role)
                config = self._role_config(role)
                # max_retries=0: the OpenAI client's own retries would each wait the whole timeout;
                # the gateway retries quick failures itself, within the timeout (see _complete).
                params: dict[str, Any] = {"model": endpoint.model, "timeout": endpoint.timeout_s,
                                          "max_retries": 0}
                if endpoint.api_base:
                    params["api_base"] = endpoint.api_base
                # The key is read from the environment now and handed to LiteLLM only.
                key = config.api_key() or _placeholder_key(endpoint)
                if key:
                    params["api_key"] = key
                model_list = [{"model_name": role, "litellm_params": params}]
                for index, fallback in enumerate(endpoint.fallbacks):
                    model_list.append({"model_name": _fallback_group(role, index),
                                       "litellm_params": {"model": fallback, "max_retries": 0,
                                                          "timeout": endpoint.timeout_s}})
                # No retries and no fallbacks in the Router: each retry would wait the whole timeout
                # again. _complete retries and falls back within the configured timeout instead.
                router = litellm.Router(model_list=model_list, num_retries=0,
                                        timeout=endpoint.timeout_s, retry_after=0)
                self._routers[role] = (endpoint, router)
            return self._routers[role]

    # -- calls -------------------------------------------------------------------------------
    def _request(self, role: str, messages: list[Message], *, max_tokens: int | None,
                 temperature: float | None, extra: dict[str, Any]) -> dict[str, Any]:
        config = self._role_config(role)
        defaults = config if isinstance(config, LLMRole) else None
        request: dict[str, Any] = {
            "model": role,
            "messages": messages,
            "max_tokens": max_tokens or (defaults.max_tokens if defaults else 512),
            "temperature": temperature if temperature is not None
            else (defaults.temperature if defaults else 0.0),
        }
        request.update({key: value for key, value in extra.items() if value is not None})
        return request

    def chat(self, messages: list[Message], *, role: str = "llm",
             tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None,
             max_tokens: int | None = None, temperature: float | None = None,
             top_logprobs: int | None = None,
             response_format: dict[str, Any] | None = None) -> ChatResult:
        """One chat completion. ``top_logprobs`` asks for per-token log-probabilities."""
        request = self._request(role, messages, max_tokens=max_tokens, temperature=temperature,
                                extra={"tools": tools, "tool_choice": tool_choice,
                                       "response_format": response_format,
                                       "logprobs": True if top_logprobs else None,
                                       "top_logprobs": top_logprobs})
        key = Cassette.key(role, request) if self.cassette is not None else ""
        if self._replaying():
            return self._replay(role, key)
        endpoint, router = self._router(role)
        with telemetry.chat_span(endpoint.display_name, endpoint.provider,
                                 max_tokens=request["max_tokens"],
                                 temperature=request["temperature"]) as span:
            telemetry.record_messages(span, inputs=messages)
            started = time.perf_counter()
            try:
                response = _complete(endpoint, router, request)
                _check_completion(response)
            except Exception as exc:
                error = _endpoint_error(endpoint, exc)
                telemetry.record_error(span, error)
                self.usage.add(_record(endpoint, started, None, None, None, ok=False))
                raise error from None  # the one line; the original stays on error.cause
            choice = response.choices[0]
            message = choice.message
            text = message.content or ""
            tool_calls = _tool_calls(message, tools)
            record = _record(endpoint, started, None, response.get("usage"), choice.finish_reason,
                             ok=True, response_model=getattr(response, "model", None))
            self.usage.add(record)
            telemetry.record_usage(span, response_model=getattr(response, "model", None),
                                   input_tokens=record.prompt_tokens,
                                   output_tokens=record.completion_tokens,
                                   finish_reasons=[choice.finish_reason] if choice.finish_reason else None)
            telemetry.record_messages(span, outputs=[{"role": "assistant", "content": text}])
        result = ChatResult(text, tool_calls, choice.finish_reason, record, _logprobs(choice))
        self._remember(key, result)
        return result

    def _remember(self, key: str, result: ChatResult) -> None:
        if self.cassette is not None and self.cassette.mode == "record":
            self.cassette.put(key, {"text": result.text, "finish_reason": result.finish_reason,
                                    "tool_calls": [[call.id, call.name, call.arguments] for call in result.tool_calls],
                                    "logprobs": result.logprobs[:CASSETTE_LOGPROB_TOKENS] if result.logprobs else None,
                                    "model": result.record.model,
                                    "prompt_tokens": result.record.prompt_tokens,
                                    "completion_tokens": result.record.completion_tokens})

    def _replay(self, role: str, key: str) -> ChatResult:
        assert self.cassette is not None
        entry = self.cassette.get(key)
        record = CallRecord(role=role, model=entry["model"], provider="cassette", latency_s=0.0, ttft_s=0.0,
                            prompt_tokens=entry["prompt_tokens"], completion_tokens=entry["completion_tokens"],
                            cached_tokens=0, finish_reason=entry["finish_reason"], ok=True)
        self.usage.add(record)
        calls = [ToolCall(call_id, name, arguments) for call_id, name, arguments in entry["tool_calls"]]
        return ChatResult(entry["text"], calls, entry["finish_reason"], record, entry["logprobs"])

    def stream(self, messages: list[Message], *, role: str = "llm", max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        """Yield the answer's text as it is generated; the usage is recorded at the end."""
        for piece in self.stream_chat(messages, role=role, max_tokens=max_tokens, temperature=temperature):
            if isinstance(piece, str):
                yield piece

    def stream_chat(self, messages: list[Message], *, role: str = "llm", tools: list[dict[str, Any]] | None = None,
                    max_tokens: int | None = None, temperature: float | None = None) -> Iterator[str | ChatResult]:
        """:meth:`chat`, streamed: text deltas (``str``) as they are generated, then one :class:`ChatResult`.

        Tool calls arrive as deltas too and are assembled into the result; a model that writes a
        call as JSON text gets it recovered like in :meth:`chat` (its text is still streamed).
        """
        request = self._request(role, messages, max_tokens=max_tokens, temperature=temperature,
                                extra={"stream": True, "stream_options": {"include_usage": True}, "tools": tools})
        key = Cassette.key(role, request) if self.cassette is not None else ""
        if self._replaying():
            replayed = self._replay(role, key)
            if replayed.text:
                yield replayed.text
            yield replayed
            return
        endpoint, router = self._router(role)
        with telemetry.chat_span(endpoint.display_name, endpoint.provider, max_tokens=request["max_tokens"],
                                 temperature=request["temperature"]) as span:  # ends on early close too
            telemetry.record_messages(span, inputs=messages)
            started = time.perf_counter()
            ttft: float | None = None
            usage: Any = None
            finish: str | None = None
            pieces: list[str] = []
            calls: dict[int, dict[str, str]] = {}  # index -> id, name, arguments (JSON text, in pieces)
            try:
                for chunk in _complete(endpoint, router, request):
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish = choice.finish_reason or finish
                    delta = choice.delta
                    for call in (getattr(delta, "tool_calls", None) or []) if delta else []:
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        index = getattr(call, "index", None)
                        if index is None:  # no index: a new id starts a new call, pieces continue the last
                            index = len(calls) if call.id or not calls else max(calls)
                        slot = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
                    text = delta.content if delta else None
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        pieces.append(text)
                        yield text
                if not pieces and not calls and not usage:
                    # Nothing at all: what a body that is no event stream (an HTML page, plain
                    # JSON) turns into in LiteLLM's stream parser; a real answer has usage at least.
                    raise _BadAnswer("an empty stream: no text, tool call or usage")
            except GeneratorExit:  # the caller stopped reading (e.g. a looping answer): still counted
                self.usage.add(_record(endpoint, started, ttft, usage, "stopped", ok=True))
                raise
            except Exception as exc:
                error = _endpoint_error(endpoint, exc)
                telemetry.record_error(span, error)
                self.usage.add(_record(endpoint, started, ttft, usage, finish, ok=False))
                raise error from None  # the one line; the original stays on error.cause
            record = _record(endpoint, started, ttft, usage, finish, ok=True)
            self.usage.add(record)
            telemetry.record_usage(span, response_model=endpoint.display_name,
                                   input_tokens=record.prompt_tokens,
                                   output_tokens=record.completion_tokens,
                                   finish_reasons=[finish] if finish else None)
            text = "".join(pieces)
            telemetry.record_messages(span, outputs=[{"role": "assistant", "content": text}])
        tool_calls = [ToolCall(slot["id"] or f"call_{index}", slot["name"], _arguments(slot["arguments"]))
                      for index, slot in sorted(calls.items()) if slot["name"]]
        if not tool_calls and tools:
            tool_calls = _tool_calls_from_text(text, tools)
        result = ChatResult(text, tool_calls, finish, record)
        self._remember(key, result)
        yield result

    def structured(self, messages: list[Message], schema: type[T], *, role: str = "llm",
                   max_tokens: int | None = None, temperature: float | None = None) -> T:
        """A validated ``schema`` instance; one retry with the validation error, then raises."""
        result, _ = self._structured(messages, schema.model_json_schema(), schema.__name__,
                                     schema.model_validate, role=role, max_tokens=max_tokens,
                                     temperature=temperature)
        return result  # type: ignore[no-any-return]

    def structured_logprobs(self, messages: list[Message], schema: type[T], *, top_logprobs: int = 5,
                            role: str = "llm", max_tokens: int | None = None,
                            temperature: float | None = None) -> tuple[T, list[dict[str, Any]] | None]:
        """Like :meth:`structured`, with the answer's per-token log-probabilities (None where the
        endpoint gives none), so a caller can read how sure the model was of a field's value."""
        result, logprobs = self._structured(messages, schema.model_json_schema(), schema.__name__,
                                            schema.model_validate, role=role, max_tokens=max_tokens,
                                            temperature=temperature, top_logprobs=top_logprobs)
        return result, logprobs

    def structured_json(self, messages: list[Message], json_schema: dict[str, Any], *,
                        role: str = "llm", max_tokens: int | None = None,
                        temperature: float | None = None) -> Any:
        """Like :meth:`structured` for a raw JSON schema; returns the validated JSON value."""
        import jsonschema

        def validate(value: Any) -> Any:
            try:
                jsonschema.validate(value, json_schema)
            except jsonschema.ValidationError as exc:
                raise ValueError(f"{exc.message} at {'/'.join(map(str, exc.path)) or 'root'}") from None
            return value

        value, _ = self._structured(messages, json_schema, json_schema.get("title", "answer"),
                                    validate, role=role, max_tokens=max_tokens, temperature=temperature)
        return value

    def _structured(self, messages: list[Message], json_schema: dict[str, Any], name: str,
                    validate: Any, *, role: str, max_tokens: int | None,
                    temperature: float | None, top_logprobs: int | None = None) -> tuple[Any, Any]:
        endpoint = self.endpoint(role)
        response_format = {"type": "json_schema",
                           "json_schema": {"name": _schema_name(name), "schema": json_schema}}
        if not _use_json_schema(endpoint, self._role_config(role).structured_output):
            response_format = {"type": "json_object"}
            messages = [{"role": "system", "content": "Answer with one JSON object that matches "
                         f"this JSON schema: {json.dumps(json_schema)}"}, *messages]
        attempt_messages = list(messages)
        errors = ""
        raw = ""
        for attempt in range(2):
            result = self.chat(attempt_messages, role=role, max_tokens=max_tokens,
                               temperature=temperature, response_format=response_format, top_logprobs=top_logprobs)
            raw = result.text
            try:
                return validate(_parse_json(raw)), result.logprobs
            except (ValueError, ValidationError) as exc:
                errors = _short_errors(exc)
            if attempt == 0:
                attempt_messages = [*messages, {"role": "assistant", "content": raw},
                                    {"role": "user", "content": "That answer is invalid: "
                                     f"{errors}. Answer again with only a JSON object that "
                                     "matches the schema."}]
        raise StructuredOutputError(
            f"{endpoint.display_name} gave no valid {name} after a retry ({errors})",
            raw=raw, errors=errors,
            hint="try a larger model (SLEUTH_LLM__MODEL) or simplify the schema")


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


# A cassette keeps the log-probabilities of an answer's first tokens only: the decisions read from
# them (a judge's option letter, a deduction's verdict) come first, and 20 alternatives for every
# token of a long answer would make a recording megabytes.
CASSETTE_LOGPROB_TOKENS = 16


def embedded(config: ModelRole) -> bool:
    """Whether a role is served by the embedded llama.cpp (a packaged model or a GGUF file)."""
    return isinstance(config, LLMRole) and bool(config.gguf or packaged.is_packaged(config.model))


def _parse_json(text: str) -> Any:
    cleaned = _FENCE.sub("", text.strip()).strip()
    if not cleaned:
        raise ValueError("the answer was empty")
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None


def _short_errors(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return shorten("; ".join(f"{'.'.join(map(str, e['loc'])) or 'root'}: {e['msg']}"
                                 for e in exc.errors()[:5]), 300)
    return shorten((str(exc).splitlines() or [type(exc).__name__])[0], 300)


def _schema_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"


_KEYLESS_PROVIDERS = {"openai", "hosted_vllm", "openai_like", "llamafile", "lm_studio"}


def _placeholder_key(endpoint: Endpoint) -> str | None:
    """Self-hosted OpenAI-compatible servers need no key, but the OpenAI client insists on one."""
    if endpoint.local:
        return "sk-local"
    if endpoint.api_base and endpoint.provider in _KEYLESS_PROVIDERS \
            and not os.environ.get("OPENAI_API_KEY"):
        return "sk-none"
    return None


def _use_json_schema(endpoint: Endpoint, mode: str) -> bool:
    if mode != "auto":
        return mode == "json_schema"
    if endpoint.local or endpoint.api_base:
        return True
    try:
        return bool(litellm.supports_response_schema(model=endpoint.model))
    except Exception:  # unknown models raise instead of answering False
        return False


def _record(endpoint: Endpoint, started: float, ttft: float | None, usage: Any,
            finish: str | None, *, ok: bool, response_model: str | None = None) -> CallRecord:
    def read(obj: Any, key: str) -> Any:
        if obj is None:
            return None
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    details = read(usage, "prompt_tokens_details")
    return CallRecord(
        role=endpoint.role, model=endpoint.display_name, provider=endpoint.provider,
        latency_s=time.perf_counter() - started, ttft_s=ttft,
        prompt_tokens=int(read(usage, "prompt_tokens") or 0),
        completion_tokens=int(read(usage, "completion_tokens") or 0),
        cached_tokens=int(read(details, "cached_tokens") or 0),
        finish_reason=finish, ok=ok)


def _fallback_group(role: str, index: int) -> str:
    return f"{role}-fallback-{index}"


_FIRST_PAUSE_S = 0.25  # before the first retry of a quick failure; doubles, at most _MAX_PAUSE_S
_MAX_PAUSE_S = 2.0


def _complete(endpoint: Endpoint, router: litellm.Router, request: dict[str, Any]) -> Any:
    """``router.completion`` for ``request`` within ``endpoint.timeout_s``, then each fallback.

    The timeout is the total for the configured model: its retries share it instead of each
    waiting it again. A failure that came quickly (unreachable, HTTP 5xx or 429, a dropped
    connection) is retried, up to ``num_retries`` times, while at least half the time is left;
    a timeout, a refused key or a malformed answer is not. Each fallback model then gets a
    timeout of its own. The primary model's error is raised when all of them fail.
    """
    groups = [endpoint.role, *(_fallback_group(endpoint.role, index)
                               for index in range(len(endpoint.fallbacks)))]
    first: Exception | None = None
    for group in groups:
        try:
            return _attempts(router, {**request, "model": group}, endpoint.timeout_s,
                             endpoint.num_retries)
        except Exception as exc:  # noqa: BLE001 - the next fallback, or raised below
            first = first or exc
    assert first is not None
    raise first


def _attempts(router: litellm.Router, request: dict[str, Any], budget_s: float, retries: int) -> Any:
    deadline = time.monotonic() + budget_s
    attempt = 0
    while True:
        try:
            return router.completion(**request, timeout=max(deadline - time.monotonic(), 0.001))
        except Exception as exc:
            pause = min(_FIRST_PAUSE_S * 2 ** attempt, _MAX_PAUSE_S)
            attempt += 1
            left = deadline - time.monotonic() - pause
            if attempt > retries or _failure(exc)[0] not in _RETRIED or left < budget_s / 2:
                raise
            time.sleep(pause)


class _BadAnswer(Exception):
    """The endpoint answered, but with something that is no chat completion."""


def _check_completion(response: Any) -> None:
    choices = getattr(response, "choices", None)
    if not choices or getattr(choices[0], "message", None) is None:
        raise _BadAnswer("a response without 'choices'")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _kind_of(exc: BaseException, *names: str) -> bool:
    """Whether a class in ``exc``'s MRO has one of ``names``. By name because the HTTP errors
    come from httpx, httpcore or httpx2 (the OpenAI client's fork), whichever is underneath."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _from_litellm(exc: BaseException) -> bool:
    # LiteLLM's own exceptions subclass the OpenAI client's and carry a status code that LiteLLM
    # picked (500 for a refused connection); only the client's and httpx's come from a response.
    return type(exc).__module__.split(".")[0] == "litellm"


def _status(exc: BaseException) -> int | None:
    """The HTTP status the server answered with, if it answered with one."""
    for error in _chain(exc):
        if _from_litellm(error):
            continue
        if _kind_of(error, "APIStatusError"):
            status = getattr(error, "status_code", None)
        elif _kind_of(error, "HTTPStatusError"):
            status = getattr(getattr(error, "response", None), "status_code", None)
        else:
            continue
        if isinstance(status, int):
            return status
    return None


# What LiteLLM and the OpenAI client say about a body that is no chat completion.
_BAD_BODY = ("Empty or invalid response", "no 'choices'", "Received response", "Invalid response object",
             "Expecting value", "Unterminated string", "JSONDecodeError", "is not valid JSON")
# Retried by _attempts: failures that come quickly and may pass (a server starting, overloaded).
_RETRIED = frozenset({"unreachable", "server_error", "rate_limited", "dropped"})


def _failure(exc: BaseException) -> tuple[str, str]:
    """What went wrong, as (kind, detail): timeout, connect_timeout, unreachable, auth,
    rate_limited, server_error, bad_answer, dropped, rejected or other."""
    chain = list(_chain(exc))
    for error in chain:
        if _kind_of(error, "ConnectTimeout"):
            return "connect_timeout", ""
    if any(_kind_of(e, "APITimeoutError", "TimeoutException", "Timeout") or isinstance(e, TimeoutError)
           for e in chain):
        return "timeout", ""
    for error in chain:
        if isinstance(error, _BadAnswer):
            return "bad_answer", str(error)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "unreachable", "the host name is not known"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "unreachable", "connection refused"
    for error in chain:
        if _kind_of(error, "ConnectError") or (isinstance(error, OSError)
                                               and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)):
            text = str(error)
            if any(marker in text for marker in ("Name or service not known", "nodename nor servname",
                                                 "getaddrinfo", "name resolution")):
                return "unreachable", "the host name is not known"
            return "unreachable", _clean(re.sub(r"^\[Errno -?\d+\]\s*", "", text)) or "connection failed"
    status = _status(exc)
    if status in (401, 403) or any(isinstance(e, litellm.exceptions.AuthenticationError) for e in chain):
        return "auth", f"HTTP {status}" if status else ""
    if status is not None and status >= 500:
        return "server_error", _server_message(exc)
    if status == 429:
        return "rate_limited", _server_message(exc)
    for error in chain:
        if isinstance(error, json.JSONDecodeError) or _kind_of(error, "APIResponseValidationError",
                                                               "DecodingError"):
            return "bad_answer", "a body that is not a valid chat completion"
        if _kind_of(error, "RemoteProtocolError", "LocalProtocolError"):
            text = str(error)
            if "without sending a response" in text or "disconnected" in text:
                return "dropped", "it closed the connection without a response"
            if "peer closed" in text or "incomplete" in text:
                return "dropped", "it closed the connection in the middle of the answer"
            return "bad_answer", "a reply that is not valid HTTP"
        if _kind_of(error, "ReadError", "WriteError"):
            return "dropped", "the connection broke off"
    text = " ".join(str(e) for e in chain)
    if any(marker in text for marker in _BAD_BODY):
        return "bad_answer", _bad_body(text)
    if status is not None:
        return "rejected", _server_message(exc)
    return "other", _clean(str(exc)) or type(exc).__name__


_PREFIX = re.compile(r"^\s*(?:(?:litellm\.)?[A-Za-z]*(?:Error|Exception)\s*(?::|-)\s*|LiteLLM:\s*|error\s*-\s*"
                     r"|Error code: \d+\s*(?:-\s*)?)")


def _clean(text: str, limit: int = 160) -> str:
    """An exception's text as a clean clause: no ``litellm.XError: XError: OpenAIException -``
    prefixes, no LiteLLM routing note, one line, cut at a word boundary."""
    text = text.split("\n\nLiteLLM:")[0].split("LiteLLM Retried:")[0]
    text = (text.strip().splitlines() or [""])[0]
    while (match := _PREFIX.match(text)) and match.end() > 0:
        text = text[match.end():]
    text = re.sub(r"\s*Received response - <APIResponse.*$", "", text)
    text = text.replace(" Check the reverse proxy or model server configuration.", "")
    return shorten(text.strip().rstrip(".").strip(), limit)


def _server_message(exc: BaseException) -> str:
    """The server's own error message (``{"error": {"message": ...}}``), else the cleaned text."""
    for error in _chain(exc):
        body = getattr(error, "body", None)
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else inner
            if isinstance(message, str) and message.strip():
                return shorten(message.strip().rstrip("."), 160)
    return _clean(str(exc))


def _bad_body(text: str) -> str:
    if "no 'choices'" in text:
        return "JSON without 'choices'"
    received = re.search(r"Received: '(.*?)'\. Check", text, re.DOTALL) \
        or re.search(r"Received: '(.*)'", text)
    if received:
        body = received.group(1).strip()
        return f"got {shorten(body, 60)!r}" if body else "an empty body"
    return "a body that is not valid JSON"


def _endpoint_error(endpoint: Endpoint, exc: BaseException) -> EndpointError:
    """Map whatever LiteLLM raised to one typed, one-line error that says what happened, where,
    and what to do. The original exception stays on the error's ``cause``."""
    role, upper = endpoint.role, endpoint.role.upper()
    url = endpoint.api_base or f"of the {endpoint.provider} API"
    where = f"the {role} endpoint {url} (model {endpoint.display_name})"
    base_hint = (f"fix {role}.api_base (SLEUTH_{upper}__API_BASE)" if endpoint.api_base
                 else "check the network connection")
    kind, detail = _failure(exc)
    if kind in ("timeout", "connect_timeout"):
        doing = "connecting" if kind == "connect_timeout" else "waiting for the answer"
        hint = (f"raise {role}.timeout_s (SLEUTH_{upper}__TIMEOUT_S) or check the server's load"
                if kind == "timeout" else f"check that the host is up and reachable, or {base_hint}")
        return EndpointTimeout(f"{where} timed out after {endpoint.timeout_s:g} s {doing}",
                               hint=hint, cause=exc)
    if kind == "unreachable":
        hint = (f"start that server or {base_hint}"
                if endpoint.api_base and "host name" not in detail else base_hint)
        return EndpointUnreachable(f"cannot reach {where}: {detail}", hint=hint, cause=exc)
    if kind == "auth":
        return AuthenticationError(f"{where} refused the credentials" + (f" ({detail})" if detail else ""),
                                   hint=f"set a valid key in the environment variable named by "
                                   f"{role}.api_key_env (SLEUTH_{upper}__API_KEY_ENV)", cause=exc)
    if kind == "bad_answer":
        hint = (f"check that the URL points at /v1 of an LLM server ({role}.api_base, "
                f"SLEUTH_{upper}__API_BASE)" if endpoint.api_base else "check the model name")
        return EndpointBadResponse(
            f"{where} answered but not as an OpenAI-compatible chat endpoint ({detail})",
            hint=hint, cause=exc)
    if kind == "dropped":
        return EndpointBadResponse(f"{where} was reached but {detail}",
                                   hint="check the server's log; it may have crashed or be overloaded",
                                   cause=exc)
    status = _status(exc)
    said = f": {detail}" if detail else ""
    if kind == "server_error":
        return EndpointBadResponse(f"{where} answered with a server error (HTTP {status}{said})",
                                   hint="check the server's log for why it failed", cause=exc)
    if kind == "rate_limited":
        return EndpointError(f"{where} is limiting the request rate (HTTP 429{said})",
                             hint="wait and try again, or lower the load", cause=exc)
    if kind == "rejected":
        hint = ("check the model name and that the URL points at /v1 of an LLM server"
                if status == 404 else "check the model name and the request's parameters")
        return EndpointError(f"{where} rejected the request (HTTP {status}{said})", hint=hint, cause=exc)
    return EndpointError(f"the call to {where} failed: {detail}",
                         hint="check the model name and the server's log (SLEUTH_DEBUG=1 shows the cause)",
                         cause=exc)


def _arguments(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def _tool_calls(message: Any, tools: list[dict[str, Any]] | None) -> list[ToolCall]:
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        calls.append(ToolCall(call.id or f"call_{len(calls)}", call.function.name, _arguments(call.function.arguments)))
    if calls or not tools:
        return calls
    return _tool_calls_from_text(message.content or "", tools)


_TOOL_TAG = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def _tool_calls_from_text(text: str, tools: list[dict[str, Any]]) -> list[ToolCall]:
    """Small local models often write the call as JSON text instead of a tool call; recover it."""
    names = {tool["function"]["name"] for tool in tools if "function" in tool}
    candidates = _TOOL_TAG.findall(text) or [text]
    calls = []
    for candidate in candidates:
        try:
            value = _parse_json(candidate)
        except ValueError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("name") in names:
                arguments = item.get("arguments", item.get("parameters", {}))
                if isinstance(arguments, str):
                    try:
                        arguments = json.loads(arguments)
                    except json.JSONDecodeError:
                        arguments = {"_raw": arguments}
                calls.append(ToolCall(f"call_{len(calls)}", item["name"], arguments))
    return calls


def _logprobs(choice: Any) -> list[dict[str, Any]] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [{"token": item.token, "logprob": item.logprob,
             "top_logprobs": {top.token: top.logprob for top in (item.top_logprobs or [])}}
            for item in content]


_default: Gateway | None = None
_default_lock = threading.Lock()


def get_gateway() -> Gateway:
    """The process-wide gateway built from the configuration."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Gateway()
        return _default
