"""Alert delivery (sleuth.live.alerts) against a real HTTP receiver on loopback."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sleuth.errors import SleuthError
from sleuth.live.alerts import (
    OVERFLOW_DIR,
    REJECTED_DIR,
    AlertRouter,
    AlertSpool,
    CorruptAlertError,
    JsonLinesSink,
    WebhookSender,
)

FAST = {"retry_base_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2.0}


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every POST and answers from a script of
    status codes (200 once the script is used up)."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        deadline = time.monotonic() + 5.0
        while True:  # rebinding a port that was just closed can fail for a moment
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(b) for b in self.bodies]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


@pytest.fixture
def senders() -> Iterator[list[WebhookSender]]:
    made: list[WebhookSender] = []
    yield made
    for s in made:
        s.close(timeout_s=0.5)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_delivers_in_order_with_idempotency_key(receivers: list[Receiver], senders: list[WebhookSender],
                                                spool_dir: Path) -> None:
    rx = Receiver()
    receivers.append(rx)
    sender = WebhookSender(rx.url, spool_dir, **FAST, headers={"Authorization": "Bearer t0ken"})
    senders.append(sender)
    alerts = [{"id": f"a-{i}", "camera": "cam-1", "score": i / 10, "label": "ñandú"} for i in range(5)]
    alerts.append({"camera": "cam-1", "score": 0.9})  # no id: the key is the spool file's name
    for alert in alerts:
        sender.send(alert)
    wait_for(lambda: len(rx.bodies) == len(alerts), what="all alerts")
    assert rx.alerts == alerts
    keys = [h["idempotency-key"] for h in rx.headers]
    assert keys[:5] == [f"a-{i}" for i in range(5)]
    assert re.fullmatch(r"\d{20}-[0-9a-f]{8}", keys[5])
    assert all(h["content-type"] == "application/json" for h in rx.headers)
    assert all(h["authorization"] == "Bearer t0ken" for h in rx.headers)
    wait_for(lambda: sender.stats["delivered"] == len(alerts), what="delivered count")
    assert sender.close() == 0
    stats = sender.stats
    assert stats["pending"] == 0 and stats["failed_attempts"] == 0 and stats["last_error"] is None
    assert list(spool_dir.glob("*.json")) == []


def test_receiver_down_keeps_alerts_on_disk_then_delivers(receivers: list[Receiver],
                                                          senders: list[WebhookSender], spool_dir: Path) -> None:
    port = free_port()  # nothing listens there: connections are refused
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", spool_dir, **FAST)
    senders.append(sender)
    alerts = [{"id": f"d-{i}", "n": i} for i in range(4)]
    started = time.monotonic()
    for alert in alerts:
        sender.send(alert)
    assert time.monotonic() - started < 1.0  # send() does not wait for the network
    wait_for(lambda: sender.stats["failed_attempts"] >= 3, what="failed attempts")
    assert len(list(spool_dir.glob("*.json"))) == len(alerts)
    assert sender.stats["pending"] == len(alerts)
    assert sender.stats["delivered"] == 0
    assert sender.stats["last_error"]

    rx = Receiver(port=port)
    receivers.append(rx)
    wait_for(lambda: sender.stats["pending"] == 0, what="spool to empty")
    assert rx.alerts == alerts
    assert sender.stats["delivered"] == len(alerts)


def test_server_errors_are_retried_with_backoff(receivers: list[Receiver], senders: list[WebhookSender],
                                                spool_dir: Path) -> None:
    rx = Receiver(statuses=[500, 429, 503, 408])
    receivers.append(rx)
    sender = WebhookSender(rx.url, spool_dir, **FAST)
    senders.append(sender)
    sender.send({"id": "r-1"})
    sender.send({"id": "r-2"})
    wait_for(lambda: sender.stats["delivered"] == 2, what="delivery after retries")
    assert sender.stats["failed_attempts"] == 4
    assert sender.stats["last_error"] == "HTTP 408 Request Timeout"
    # The first alert was retried (same key each time) and delivered before the second.
    assert [h["idempotency-key"] for h in rx.headers] == ["r-1"] * 5 + ["r-2"]
    assert sender.close() == 0


def test_client_error_rejects_without_retry(receivers: list[Receiver], senders: list[WebhookSender],
                                            spool_dir: Path) -> None:
    rx = Receiver(statuses=[400])
    receivers.append(rx)
    sender = WebhookSender(rx.url, spool_dir, **FAST)
    senders.append(sender)
    sender.send({"id": "bad"})
    sender.send({"id": "good"})
    wait_for(lambda: sender.stats["delivered"] == 1, what="the later alert")
    assert sender.close() == 0
    assert [a["id"] for a in rx.alerts] == ["bad", "good"]  # "bad" was tried once only
    rejected = list((spool_dir / REJECTED_DIR).glob("*.json"))
    assert len(rejected) == 1 and json.loads(rejected[0].read_text()) == {"id": "bad"}
    stats = sender.stats
    assert stats["rejected"] == 1 and stats["failed_attempts"] == 0 and stats["pending"] == 0
    assert "400" in stats["last_error"]


def test_spool_from_an_earlier_run_is_delivered_on_start(receivers: list[Receiver],
                                                         senders: list[WebhookSender], spool_dir: Path) -> None:
    earlier = AlertSpool(spool_dir)
    alerts = [{"id": f"old-{i}"} for i in range(3)]
    for alert in alerts:
        earlier.put(alert)
    assert len(earlier) == 3
    rx = Receiver()
    receivers.append(rx)
    sender = WebhookSender(rx.url, spool_dir, **FAST)
    senders.append(sender)
    wait_for(lambda: len(earlier) == 0, what="the earlier spool to empty")
    assert rx.alerts == alerts
    assert sender.stats["delivered"] == 3


def test_max_queue_moves_the_oldest_to_overflow(senders: list[WebhookSender], spool_dir: Path) -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", spool_dir, retry_base_s=30.0,
                           retry_max_s=30.0, timeout_s=1.0, max_queue=3)
    senders.append(sender)
    sender.send({"id": "q-0"})
    wait_for(lambda: sender.stats["failed_attempts"] == 1, what="the first failure")  # now in backoff
    for i in range(1, 5):
        sender.send({"id": f"q-{i}"})
    spool = AlertSpool(spool_dir)
    assert [spool.load(p)["id"] for p in spool.pending()] == ["q-2", "q-3", "q-4"]
    overflow = sorted((spool_dir / OVERFLOW_DIR).glob("*.json"))
    assert [json.loads(p.read_text())["id"] for p in overflow] == ["q-0", "q-1"]
    assert sender.stats["overflow"] == 2
    assert sender.close(timeout_s=1.0) == 3  # one last attempt, still refused


def test_corrupt_spool_file_is_set_aside(receivers: list[Receiver], senders: list[WebhookSender],
                                         spool_dir: Path) -> None:
    spool = AlertSpool(spool_dir)
    first = spool.put({"id": "c-1"})
    corrupt = first.with_name(first.stem + "z.json")  # sorts between the two alerts
    corrupt.write_text("{not json")
    spool.put({"id": "c-2"})
    assert spool.pending()[1] == corrupt
    with pytest.raises(CorruptAlertError):
        AlertSpool(spool_dir).load(corrupt)
    assert corrupt.with_name(corrupt.name + ".bad").exists()
    corrupt.write_text("[1, 2]")  # valid JSON but not an alert object

    rx = Receiver()
    receivers.append(rx)
    sender = WebhookSender(rx.url, spool_dir, **FAST)
    senders.append(sender)
    wait_for(lambda: sender.stats["delivered"] == 2, what="the valid alerts")
    assert [a["id"] for a in rx.alerts] == ["c-1", "c-2"]
    assert corrupt.with_name(corrupt.name + ".bad").read_text() == "[1, 2]"
    assert sender.stats["corrupt"] == 1 and sender.stats["pending"] == 0


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "localhost:8080/hook", "file:///tmp/hook", "http://", ""])
def test_non_http_url_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(SleuthError) as info:
        WebhookSender(url, tmp_path / "spool")
    assert "--webhook http(s)://" in str(info.value)
    assert not (tmp_path / "spool").exists()


def test_unserialisable_alert_is_refused(senders: list[WebhookSender], spool_dir: Path) -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/", spool_dir, **FAST)
    senders.append(sender)
    with pytest.raises(SleuthError, match="JSON-serialisable"):
        sender.send({"when": object()})
    assert list(spool_dir.iterdir()) == []


def test_json_lines_sink_and_router(receivers: list[Receiver], senders: list[WebhookSender],
                                    spool_dir: Path) -> None:
    out = io.StringIO()
    alerts = [{"id": "j-1", "text": "line\nbreak", "label": "ñ"}, {"id": "j-2", "score": 0.5}]
    rx = Receiver()
    receivers.append(rx)
    webhook = WebhookSender(rx.url, spool_dir, **FAST)
    senders.append(webhook)
    router = AlertRouter([JsonLinesSink(out), webhook])
    for alert in alerts:
        router.emit(alert)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and [json.loads(line) for line in lines] == alerts
    wait_for(lambda: len(rx.bodies) == 2, what="webhook delivery")
    assert router.close(timeout_s=2.0) == 0
    assert rx.alerts == alerts


def test_json_lines_sink_is_thread_safe() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    threads = [threading.Thread(target=lambda t=t: [sink.send({"t": t, "i": i}) for i in range(200)])
               for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 800
    assert sorted((d["t"], d["i"]) for d in map(json.loads, lines)) == [(t, i) for t in range(4) for i in range(200)]
