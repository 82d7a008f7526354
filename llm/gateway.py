"""The one module through which every LLM and VLM call in Sleuth goes.

Built on LiteLLM's Router (retries, timeouts, fallbacks). A role (``llm``, ``vlm``) maps to an
endpoint: the packaged GGUF served in-process by llama.cpp, or any LiteLLM model string with a
base URL. Every call is traced once (``chat <model>`` span) and recorded in :class:`UsageLog`
(model, latency, time to first token, prompt/completion tokens).

Structured output: pass a pydantic model, get a validated instance. The JSON schema travels as
``response_format``; llama.cpp turns it into a grammar, so the local model cannot leave it. An
answer that still fails validation is retried once with the validation error, then
:class:`~sleuth.errors.StructuredOutputError` is raised.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import os
import re
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
    EndpointError,
    EndpointTimeout,
    StructuredOutputError,
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
        if isinstance(config, LLMRole) and (config.gguf or packaged.is_packaged(config.model)):
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
                params: dict[str, Any] = {"model": endpoint.model, "timeout": endpoint.timeout_s}
                if endpoint.api_base:
                    params["api_base"] = endpoint.api_base
                # The key is read from the environment now and handed to LiteLLM only.
                key = config.api_key() or _placeholder_key(endpoint)
                if key:
                    params["api_key"] = key
                model_list = [{"model_name": role, "litellm_params": params}]
                names = []
                for index, fallback in enumerate(endpoint.fallbacks):
                    name = f"{role}-fallback-{index}"
                    names.append(name)
                    model_list.append({"model_name": name,
                                       "litellm_params": {"model": fallback,
                                                          "timeout": endpoint.timeout_s}})
                router = litellm.Router(
                    model_list=model_list,
                    num_retries=endpoint.num_retries,
                    timeout=endpoint.timeout_s,
                    retry_after=0,
                    fallbacks=[{role: names}] if names else [],
                )
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
                response = router.completion(**request)
            except Exception as exc:
                error = _endpoint_error(endpoint, exc)
                telemetry.record_error(span, error)
                self.usage.add(_record(endpoint, started, None, None, None, ok=False))
                raise error from None
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
                                    "logprobs": result.logprobs, "model": result.record.model,
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
                for chunk in router.completion(**request):
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
            except GeneratorExit:
                raise
            except Exception as exc:
                error = _endpoint_error(endpoint, exc)
                telemetry.record_error(span, error)
                self.usage.add(_record(endpoint, started, ttft, usage, finish, ok=False))
                raise error from None
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
        result = self._structured(messages, schema.model_json_schema(), schema.__name__,
                                  schema.model_validate, role=role, max_tokens=max_tokens,
                                  temperature=temperature)
        return result  # type: ignore[no-any-return]

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

        return self._structured(messages, json_schema, json_schema.get("title", "answer"),
                                validate, role=role, max_tokens=max_tokens, temperature=temperature)

    def _structured(self, messages: list[Message], json_schema: dict[str, Any], name: str,
                    validate: Any, *, role: str, max_tokens: int | None,
                    temperature: float | None) -> Any:
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
                               temperature=temperature, response_format=response_format)
            raw = result.text
            try:
                return validate(_parse_json(raw))
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
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'root'}: {e['msg']}"
                         for e in exc.errors()[:5])
    return str(exc).splitlines()[0][:300]


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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_timeout(exc: BaseException) -> bool:
    import httpx
    import openai

    return any(isinstance(e, (litellm.exceptions.Timeout, openai.APITimeoutError,
                              httpx.TimeoutException, TimeoutError)) for e in _chain(exc))


def _is_unreachable(exc: BaseException) -> bool:
    import httpx
    import openai

    kinds = (litellm.exceptions.APIConnectionError, litellm.exceptions.ServiceUnavailableError,
             openai.APIConnectionError, httpx.ConnectError, ConnectionError)
    # LiteLLM wraps a refused streaming connection in InternalServerError("Connection error.")
    return any(isinstance(e, kinds) or "Connection error" in str(e) for e in _chain(exc))


def _endpoint_error(endpoint: Endpoint, exc: Exception) -> EndpointError:
    """Map whatever LiteLLM raised to one typed, one-line error that says what to do."""
    where = endpoint.api_base or endpoint.model
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if _is_timeout(exc):
        return EndpointTimeout(f"{endpoint.role} endpoint {where} timed out after "
                               f"{endpoint.timeout_s:g} s",
                               hint=f"raise {endpoint.role}.timeout_s or check the server load")
    if isinstance(exc, litellm.exceptions.AuthenticationError):
        return AuthenticationError(f"{endpoint.role} endpoint {where} rejected the API key",
                                   hint=f"set a valid key in the variable named by "
                                   f"{endpoint.role}.api_key_env")
    if _is_unreachable(exc):
        return EndpointError(f"cannot reach the {endpoint.role} endpoint {where}",
                             hint=f"start that server or fix {endpoint.role}.api_base "
                             f"(SLEUTH_{endpoint.role.upper()}__API_BASE)")
    return EndpointError(f"{endpoint.role} endpoint {where} failed: {detail}",
                         hint="check the model name and the server's log")


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
