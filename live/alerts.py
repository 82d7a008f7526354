"""Delivering the alerts of ``sleuth watch``: to a webhook, to standard output, or both.

An alert is a JSON-serialisable dict. :class:`WebhookSender` POSTs each alert to an http(s) URL
with this guarantee:

* **Kept on disk first.** ``send()`` writes the alert to a spool folder (one file per alert,
  written atomically) before anything else, and returns without waiting for the network. A
  background thread delivers it. Alerts the receiver has not yet accepted stay on disk while it is
  down, and when the process stops or dies; the next sender started on the same spool folder
  delivers them.
* **Ordered.** The oldest pending alert is delivered before any newer one. While it cannot be
  delivered (connection refused, timeout, HTTP 408, 429 or 5xx), newer alerts wait behind it and
  the sender retries with exponential backoff.
* **At least once.** An alert is removed from the spool only after a 2xx answer, so a receiver may
  see the same alert twice (the answer was lost, the process died before removing the file).
  Receivers should de-duplicate by the ``Idempotency-Key`` header, which is the alert's ``id``
  when it has one and otherwise a key unique to its spool file and stable across retries.
* **Bounded.** A 4xx answer other than 408 and 429 is a permanent rejection: the alert moves to
  ``<spool>/rejected/`` and is not retried. At most ``max_queue`` alerts wait in the spool; beyond
  that the oldest move to ``<spool>/overflow/``. A spool file that is not valid JSON is renamed
  ``<name>.bad``. Nothing is deleted except after delivery; all of these are counted in ``stats``.

Use one sender per spool folder: two processes sharing one would deliver its alerts twice.
:class:`JsonLinesSink` writes alerts as JSON lines (to standard output by default), and
:class:`AlertRouter` sends each alert to several sinks.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO
from uuid import uuid4

from sleuth.errors import SleuthError

logger = logging.getLogger("sleuth.live.alerts")

REJECTED_DIR = "rejected"
OVERFLOW_DIR = "overflow"
_USER_AGENT = "sleuth-alerts/1"
_RETRYABLE_4XX = frozenset({408, 429})

# Spool names start with the wall-clock time in nanoseconds; this keeps them strictly increasing
# within the process even when the clock returns the same value twice.
_name_lock = threading.Lock()
_last_ns = 0


def _next_ns() -> int:
    global _last_ns
    with _name_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


class CorruptAlertError(SleuthError):
    """A spool file is not a JSON object; it has been renamed ``<name>.bad``."""


def _encode(alert: dict[str, Any]) -> bytes:
    if not isinstance(alert, dict):
        raise SleuthError(f"an alert must be a dict, not {type(alert).__name__}",
                          hint="build alerts as JSON-serialisable dicts")
    try:
        return json.dumps(alert, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SleuthError("an alert is not JSON-serialisable", hint=str(exc), cause=exc) from None


class AlertSpool:
    """A folder of undelivered alerts, one JSON file per alert, oldest first by name."""

    def __init__(self, spool_dir: Path | str, *, fsync: bool = True) -> None:
        self.spool_dir = Path(spool_dir)
        self.fsync = fsync
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def put(self, alert: dict[str, Any]) -> Path:
        """Write ``alert`` atomically (a temporary file, then a rename) and return its path."""
        data = _encode(alert)
        name = f"{_next_ns():020d}-{uuid4().hex[:8]}.json"
        path = self.spool_dir / name
        tmp = self.spool_dir / f".{name}.tmp"  # hidden and not *.json: never seen as pending
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def pending(self) -> list[Path]:
        """The alert files waiting for delivery, oldest first."""
        return sorted((p for p in self.spool_dir.glob("*.json") if p.is_file()), key=lambda p: p.name)

    def load(self, path: Path) -> dict[str, Any]:
        """The alert in ``path``. A file that is not a JSON object is renamed ``<name>.bad`` and
        :class:`CorruptAlertError` is raised; ``FileNotFoundError`` if it is gone."""
        raw = Path(path).read_bytes()
        try:
            alert = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            reason = str(exc)
        else:
            if isinstance(alert, dict):
                return alert
            reason = f"a JSON {type(alert).__name__}, not an object"
        bad = Path(path).with_name(Path(path).name + ".bad")
        os.replace(path, bad)
        raise CorruptAlertError(f"spool file {Path(path).name} is not a valid alert ({reason})",
                                hint=f"it was set aside as {bad}")

    def remove(self, path: Path) -> None:
        Path(path).unlink(missing_ok=True)

    def set_aside(self, path: Path, folder: str) -> Path | None:
        """Move ``path`` into the subfolder ``folder`` of the spool; None if it was already gone."""
        target_dir = self.spool_dir / folder
        target_dir.mkdir(exist_ok=True)
        target = target_dir / Path(path).name
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None
        return target

    def __len__(self) -> int:
        return len(self.pending())


def _redact(url: str) -> str:
    """``url`` without any user:password part, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _check_url(url: str) -> str:
    hint = "pass --webhook http(s)://host/path"
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SleuthError(f"the webhook URL {_redact(str(url))!r} is not an http(s) URL", hint=hint)
    return url


def _header_safe(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(value) and len(value) <= 200 and not any(c in value for c in "\r\n\0")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a bodiless GET."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


_Outcome = Literal["delivered", "retry", "rejected"]


class WebhookSender:
    """POSTs alerts to an http(s) webhook from a background thread, keeping them on disk until the
    receiver accepts them (see the module docstring for the guarantee)."""

    def __init__(self, url: str, spool_dir: Path, *, timeout_s: float = 5.0, retry_base_s: float = 1.0,
                 retry_max_s: float = 60.0, max_queue: int = 1000, headers: dict[str, str] | None = None) -> None:
        self.url = _check_url(url)
        if timeout_s <= 0 or retry_base_s <= 0 or retry_max_s < retry_base_s:
            raise SleuthError("invalid webhook timing",
                              hint="timeout_s and retry_base_s must be > 0 and retry_max_s >= retry_base_s")
        if max_queue < 1:
            raise SleuthError("invalid webhook max_queue", hint="max_queue must be at least 1")
        self.spool = AlertSpool(spool_dir)
        self.timeout_s = timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_queue = max_queue
        self.headers = dict(headers or {})
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline: float | None = None  # monotonic; set by close() for the last attempt
        self._inflight: Path | None = None
        self._backoff = retry_base_s
        self._failing = False
        self._closed = False
        self._delivered = 0
        self._failed_attempts = 0
        self._rejected = 0
        self._overflow = 0
        self._corrupt = 0
        self._last_error: str | None = None
        with self._lock:
            self._trim()  # a spool left by an earlier run may exceed the bound
        self._thread = threading.Thread(target=self._run, name="sleuth-webhook", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------------

    def send(self, alert: dict[str, Any]) -> None:
        """Spool ``alert`` on disk and wake the delivery thread; no network I/O here. After
        :meth:`close` the alert is still spooled, for the next sender on this spool folder."""
        self.spool.put(alert)
        with self._lock:
            self._trim()
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> int:
        """Make one last delivery attempt within ``timeout_s``, stop the thread and return the number
        of alerts still pending on disk."""
        if not self._closed:
            self._closed = True
            self._deadline = time.monotonic() + max(timeout_s, 0.0)
            self._stop.set()
            self._wake.set()
            self._thread.join(max(timeout_s, 0.0) + 0.5)
            if self._thread.is_alive():
                logger.warning("webhook %s: the last delivery did not finish within %.1f s",
                               _redact(self.url), timeout_s)
        return len(self.spool)

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since this sender started. ``pending`` is the number of alert files on disk;
        ``last_error`` is the most recent delivery error, kept after deliveries resume."""
        with self._lock:
            return {"delivered": self._delivered, "pending": len(self.spool),
                    "failed_attempts": self._failed_attempts, "rejected": self._rejected,
                    "overflow": self._overflow, "corrupt": self._corrupt, "last_error": self._last_error}

    # -- delivery thread ---------------------------------------------------------------------------

    def _trim(self) -> None:
        """Move the oldest spool files beyond ``max_queue`` to ``overflow/`` (never the one in flight).
        Called with the lock held."""
        pending = self.spool.pending()
        excess = len(pending) - self.max_queue
        for path in pending:
            if excess <= 0:
                break
            if path == self._inflight:
                continue
            if self.spool.set_aside(path, OVERFLOW_DIR) is not None:
                self._overflow += 1
                excess -= 1
                logger.warning("webhook spool over %d alerts: moved the oldest, %s, to %s/",
                               self.max_queue, path.name, OVERFLOW_DIR)

    def _run(self) -> None:
        while True:
            self._wake.clear()
            last = self._stop.is_set()  # close() was called before this pass: it is the last one
            try:
                ok = self._drain()
            except Exception as exc:  # a bug or a disk error must not end delivery silently
                logger.exception("webhook delivery failed unexpectedly")
                with self._lock:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                ok = False
            if last:
                return
            if self._stop.is_set():
                continue  # close() came during the pass: one more, for what was sent before it
            if ok:
                self._wake.wait()
            else:
                delay = self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max_s)
                self._stop.wait(delay)  # new alerts do not cut the backoff short; close() does

    def _drain(self) -> bool:
        """Deliver the pending files oldest first; False when the oldest could not be delivered."""
        for path in self.spool.pending():
            if self._deadline is not None and time.monotonic() >= self._deadline:
                return False
            with self._lock:
                if not path.exists():  # moved to overflow/ since the listing
                    continue
                self._inflight = path
            outcome: _Outcome | Literal["corrupt", "gone"] = "gone"
            error: str | None = None
            try:
                try:
                    alert = self.spool.load(path)
                except CorruptAlertError as exc:
                    logger.warning("%s", exc)
                    outcome = "corrupt"
                    continue
                except FileNotFoundError:
                    continue
                outcome, error = self._post(path, alert)
            finally:
                # The file leaves the spool (or stays) and the counters change in one step, so that
                # ``stats`` never shows an alert as neither pending nor counted.
                with self._lock:
                    self._inflight = None
                    if outcome == "delivered":
                        self.spool.remove(path)
                        self._delivered += 1
                    elif outcome == "rejected":
                        self.spool.set_aside(path, REJECTED_DIR)
                        self._rejected += 1
                    elif outcome == "retry":
                        self._failed_attempts += 1
                    elif outcome == "corrupt":
                        self._corrupt += 1
                    if error is not None:
                        self._last_error = error
            if outcome == "retry":
                return False
        return True

    def _post(self, path: Path, alert: dict[str, Any]) -> tuple[_Outcome, str | None]:
        """POST one alert: ("delivered", None), or "retry" or "rejected" with the error."""
        alert_id = alert.get("id")
        key = str(alert_id) if alert_id is not None else ""
        if not _header_safe(key):
            key = path.stem
        headers = {"User-Agent": _USER_AGENT, **self.headers,
                   "Content-Type": "application/json", "Idempotency-Key": key}
        timeout = self.timeout_s
        if self._deadline is not None:
            timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        request = urllib.request.Request(self.url, data=_encode(alert), headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(1 << 16)
        except urllib.error.HTTPError as exc:
            exc.close()
            error = f"HTTP {exc.code} {exc.reason}".strip()
            if 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX:
                logger.error("webhook %s rejected alert %s (%s); moved it to %s/",
                             _redact(self.url), key, error, REJECTED_DIR)
                return "rejected", error
            return self._failed(error)
        except urllib.error.URLError as exc:
            return self._failed(f"{exc.reason}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}".rstrip(": "))
        self._backoff = self.retry_base_s
        if self._failing:
            self._failing = False
            logger.info("webhook %s: delivering again", _redact(self.url))
        return "delivered", None

    def _failed(self, error: str) -> tuple[_Outcome, str]:
        if not self._failing:
            self._failing = True
            logger.warning("webhook %s: delivery failed (%s); alerts are kept in %s and retried",
                           _redact(self.url), error, self.spool.spool_dir)
        return "retry", error


class JsonLinesSink:
    """Writes each alert as one JSON line to ``stream`` (standard output by default), flushed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, alert: dict[str, Any]) -> None:
        line = _encode(alert).decode("utf-8") + "\n"
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()

    def close(self, timeout_s: float = 5.0) -> int:
        return 0


class AlertSink(Protocol):
    def send(self, alert: dict[str, Any]) -> None: ...

    def close(self, timeout_s: float = 5.0) -> int: ...


class AlertRouter:
    """Sends each alert to every sink; one failing sink does not keep the alert from the others."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self.sinks = list(sinks)

    def emit(self, alert: dict[str, Any]) -> None:
        """Send ``alert`` to every sink, then raise the first error any of them raised."""
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def close(self, timeout_s: float = 5.0) -> int:
        """Close every sink within ``timeout_s`` in all; the number of alerts left undelivered."""
        deadline = time.monotonic() + timeout_s
        return sum(sink.close(max(0.0, deadline - time.monotonic())) for sink in self.sinks)
