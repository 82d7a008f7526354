"""Faults of an LLM endpoint, each reported as what it is: unreachable, timed out, answered badly
(malformed body, HTTP 5xx) or refused the key; one clean line that names the URL and the model,
the original exception kept for SLEUTH_DEBUG. Real local HTTP servers in threads, no model."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import typer
from opentelemetry.sdk.trace import TracerProvider
from sleuth import telemetry
from sleuth.cli import runner
from sleuth.config import TracingConfig
from sleuth.errors import (
    AuthenticationError,
    EndpointBadResponse,
    EndpointError,
    EndpointTimeout,
    EndpointUnreachable,
    shorten,
)
from sleuth.llm.gateway import Gateway

from tests.conftest import closed_port_url

ASK = [{"role": "user", "content": "Is a cart on the walkway normal?"}]
MODEL = "openai/faulty"
# Reply: (status, content type, body) or None to never answer.
Reply = tuple[int, str, bytes] | None


class FaultServer:
    """An HTTP server on 127.0.0.1 that answers every POST with ``reply(request_number)``."""

    def __init__(self, reply: Callable[[int], Reply]) -> None:
        self.reply = reply
        self.hits = 0
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.hits += 1
                answer = server.reply(server.hits)
                if answer is None:  # accept, then never answer
                    server.released.wait(30)
                    return
                status, content_type, body = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FaultServer]]:
    """Start a FaultServer and configure it as the ``llm`` role."""
    servers: list[FaultServer] = []

    def start(reply: Callable[[int], Reply], *, timeout_s: float = 5, retries: int = 0) -> FaultServer:
        server = FaultServer(reply)
        servers.append(server)
        configure(monkeypatch, server.url, timeout_s=timeout_s, retries=retries)
        return server

    yield start
    for server in servers:
        server.close()


def configure(monkeypatch: pytest.MonkeyPatch, url: str, *, timeout_s: float = 5, retries: int = 0) -> None:
    monkeypatch.setenv("SLEUTH_LLM__MODEL", MODEL)
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", url)
    monkeypatch.setenv("SLEUTH_LLM__TIMEOUT_S", str(timeout_s))
    monkeypatch.setenv("SLEUTH_LLM__NUM_RETRIES", str(retries))


def json_reply(status: int, payload: Any) -> Reply:
    return status, "application/json", json.dumps(payload).encode()


def completion(text: str) -> Reply:
    return json_reply(200, {"id": "r", "object": "chat.completion", "created": 0, "model": "faulty",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


def raised(call: Callable[[], Any], kind: type[EndpointError] = EndpointError) -> EndpointError:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


def assert_clean_line(error: EndpointError, url: str) -> str:
    text = str(error)
    assert "\n" not in text
    assert url in text and MODEL in text  # names the endpoint and the model
    for soup in ("litellm.", "OpenAIException", "InternalServerError", "APIConnectionError",
                 "LiteLLM", "model group"):
        assert soup not in text, text
    return text


# -- (c) reached, answered badly ---------------------------------------------------------------

def test_html_answer_is_a_bad_answer_not_an_outage(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: (200, "text/html", b"<html><body>It works!</body></html>"))
    error = raised(lambda: Gateway().chat(ASK), EndpointBadResponse)
    text = assert_clean_line(error, server.url)
    assert "cannot reach" not in text and "start that server" not in text
    assert f"the llm endpoint {server.url} (model {MODEL}) answered but not as an OpenAI-compatible " \
        "chat endpoint" in text
    assert "It works!" in text  # what it got, shortened
    assert "check that the URL points at /v1 of an LLM server" in text


def test_json_that_is_no_chat_completion_is_a_bad_answer(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: json_reply(200, {"status": "ok", "version": "1.2"}))
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK), EndpointBadResponse), server.url)
    assert "answered but not as an OpenAI-compatible chat endpoint" in text and "'choices'" in text


def test_streamed_garbage_is_a_bad_answer_not_an_empty_reply(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: (200, "text/html", b"<html>login page</html>"))
    error = raised(lambda: list(Gateway().stream(ASK)), EndpointBadResponse)
    assert "answered but not as an OpenAI-compatible chat endpoint" in assert_clean_line(error, server.url)


def test_a_reply_that_is_not_http_is_a_bad_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Garbage(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Garbage) as tcp:
        tcp.daemon_threads = True
        threading.Thread(target=tcp.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{tcp.server_address[1]}/v1"
        configure(monkeypatch, url)
        error = raised(lambda: Gateway().chat(ASK), EndpointBadResponse)
        tcp.shutdown()
    text = assert_clean_line(error, url)
    assert "cannot reach" not in text and "not valid HTTP" in text


def test_server_error_names_the_status_and_the_servers_message(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: json_reply(500, {"error": {"message": "CUDA out of memory"}}))
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK), EndpointBadResponse), server.url)
    assert "server error (HTTP 500: CUDA out of memory)" in text and "log" in text


# -- (a) unreachable ---------------------------------------------------------------------------

def test_refused_connection_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    configure(monkeypatch, url)
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK), EndpointUnreachable), url)
    assert text.startswith(f"cannot reach the llm endpoint {url} (model {MODEL}): connection refused: ")
    assert "start that server" in text


def test_unknown_host_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "llm.example.invalid":  # no resolver round trip: the same error, at once
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    url = "http://llm.example.invalid:8080/v1"
    configure(monkeypatch, url)
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK), EndpointUnreachable), url)
    assert "cannot reach" in text and "host name is not known" in text


# -- (d) auth ----------------------------------------------------------------------------------

def test_refused_key_is_an_auth_error(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: json_reply(401, {"error": {"message": "invalid api key"}}))
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK), AuthenticationError), server.url)
    assert "refused the credentials (HTTP 401)" in text and "api_key_env" in text


# -- (b) timeout: the configured time is the total -----------------------------------------------

def test_a_server_that_never_answers_times_out_in_the_configured_time(
        serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda _: None, timeout_s=2, retries=2)  # retries must not multiply the 2 s
    gateway = Gateway()
    gateway.endpoint()  # the router is built before the clock starts
    started = time.monotonic()
    error = raised(lambda: gateway.chat(ASK), EndpointTimeout)
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 4, elapsed
    text = assert_clean_line(error, server.url)
    assert "timed out after 2 s" in text and "timeout_s" in text
    assert server.hits == 1  # one connection, not three


def test_a_streamed_call_to_a_silent_server_times_out_in_the_configured_time(
        serve: Callable[..., FaultServer]) -> None:
    serve(lambda _: None, timeout_s=2, retries=2)
    started = time.monotonic()
    error = raised(lambda: list(Gateway().stream(ASK)), EndpointTimeout)
    assert time.monotonic() - started < 4.5
    assert "timed out after 2 s" in str(error)


def test_quick_failures_are_retried_within_the_timeout(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda hit: json_reply(503, {"error": {"message": "loading model"}}) if hit < 3
                   else completion("fine"), timeout_s=5, retries=2)
    assert Gateway().chat(ASK).text == "fine"
    assert server.hits == 3


def test_a_retry_gets_only_the_time_that_is_left(serve: Callable[..., FaultServer]) -> None:
    server = serve(lambda hit: json_reply(503, {"error": {"message": "busy"}}) if hit == 1 else None,
                   timeout_s=2, retries=2)
    gateway = Gateway()
    gateway.endpoint()
    started = time.monotonic()
    raised(lambda: gateway.chat(ASK), EndpointTimeout)
    assert time.monotonic() - started < 3
    assert server.hits == 2


# -- clean text, the cause kept ------------------------------------------------------------------

def test_a_long_server_message_is_cut_at_a_word_boundary(serve: Callable[..., FaultServer]) -> None:
    words = [f"w{index}x" for index in range(120)]  # a cut mid-word leaves a token without its x
    server = serve(lambda _: json_reply(400, {"error": {"message": " ".join(words)}}))
    text = assert_clean_line(raised(lambda: Gateway().chat(ASK)), server.url)
    assert "rejected the request (HTTP 400: w0x w1x" in text
    assert "…" in text
    assert all(token.endswith("x") for token in re.findall(r"\bw\d+x?", text)), text


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert shorten("one two three", 20) == "one two three"
    assert shorten("alpha beta gamma delta", 13) == "alpha beta…"
    assert shorten("line one\n  line two", 40) == "line one line two"


def test_the_original_exception_stays_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, closed_port_url())
    error = raised(lambda: Gateway().chat(ASK), EndpointUnreachable)
    assert error.__suppress_context__  # the normal traceback stays short...
    assert error.cause is not None  # ...but the cause is kept, down to the refused socket
    chain, current = [], error.cause
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    assert any(isinstance(item, ConnectionRefusedError) for item in chain)


# -- SLEUTH_DEBUG --------------------------------------------------------------------------------

def run_failing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    configure(monkeypatch, closed_port_url())
    with pytest.raises(typer.Exit) as caught:
        runner.run("ask", lambda settings: Gateway(settings).chat(ASK))
    assert caught.value.exit_code == 2
    return capsys.readouterr().err


def test_without_debug_the_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    err = run_failing(monkeypatch, capsys)
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "cannot reach the llm endpoint" in line


def test_sleuth_debug_shows_the_cause_and_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLEUTH_DEBUG", "1")
    err = run_failing(monkeypatch, capsys)
    assert "Traceback (most recent call last)" in err
    assert "sleuth.errors.EndpointUnreachable" in err
    assert "Caused by litellm." in err  # the exception the gateway raised from None
    assert "ConnectError: [Errno 111] Connection refused" in err  # and its chain, down to the socket
    assert err.rstrip().splitlines()[-1].startswith("error: cannot reach the llm endpoint")


def test_sleuth_debug_shows_an_unexpected_errors_chain(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLEUTH_DEBUG", "1")

    def broken(settings: Any) -> None:
        try:
            {}["frame"]
        except KeyError:
            raise RuntimeError("words " * 80) from None

    with pytest.raises(typer.Exit) as caught:
        runner.run("broken", broken)
    assert caught.value.exit_code == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError" in err
    assert "Caused by builtins.KeyError" in err
    last = err.rstrip().splitlines()[-1]
    said = last.split("unexpected RuntimeError: ")[1].split(" (rerun with SLEUTH_DEBUG=1")[0]
    assert said.endswith("words…")  # cut at a word boundary, not inside a word
    assert set(said.removesuffix("…").split()) == {"words"}


# -- console traces --------------------------------------------------------------------------------

def test_console_spans_go_to_stderr_not_into_the_answer(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(telemetry, "_provider", TracerProvider())  # a private one, dropped after
    monkeypatch.setattr(telemetry, "_installed", set(), raising=False)
    telemetry.configure(TracingConfig(exporter="console"))
    telemetry.configure(TracingConfig(exporter="console"))  # configured twice, exported once
    with telemetry.request_span("sleuth ask"):
        sys.stdout.write("FIXED ANSWER 42")
    telemetry.flush()
    captured = capsys.readouterr()
    assert captured.out == "FIXED ANSWER 42"
    assert captured.err.count('"name": "sleuth ask"') == 1


def test_sleuth_ask_with_console_traces_prints_only_the_answer_on_stdout(
        scripted_openai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import sleuth

    monkeypatch.setenv("SLEUTH_TRACING__EXPORTER", "console")
    scripted_openai.replies = ["FIXED ANSWER 42"]
    result = sleuth("ask", "what is the answer?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FIXED ANSWER 42"
    assert '"name": "chat openai/scripted"' in result.stderr and '"name": "sleuth ask"' in result.stderr
