"""The Qdrant connection shared by the rule memory and the galleries.

Where the data lives comes from ``settings.qdrant``: the server at ``url`` (``QDRANT_URL``) with
the API key read from the variable named by ``api_key_env``, else Qdrant local mode in ``path``
(default ``<data dir>/qdrant``). Failures are one-line :class:`~sleuth.errors.SleuthError`\\ s:
an unreachable or refusing server, a folder that cannot be created, and a local folder that
another process kept in use for longer than the lock wait.

Local mode is one process at a time: ``QdrantClient(path=...)`` loads the folder into memory and
takes a file lock on it until it is closed. So that several processes (``sleuth serve api``,
``sleuth rules``, ``sleuth detect``...) can take turns on one data folder, a store here does not
keep the folder open for its whole life: it opens the folder when an operation needs it (or for a
batch, :meth:`QdrantStore.hold`) and releases it when nothing used it for ``qdrant.idle_release_s``
(default 2 s), at once when another Sleuth process is waiting for it, and when the store is
closed. Opening costs about 25 ms for a rule memory of a few scenes and 0.1 s more per 1,000
gallery items; closing under 1 ms. Every write is committed (SQLite, ``meta.json``) before the
call that made it returns, so what one process wrote is on disk before the lock passes on.

A process that finds the folder in use retries, with a short backoff, for up to
``qdrant.lock_wait_s`` (default 30 s) before the ``locked`` error. Sleuth processes also take a
lock of their own (``.sleuth.lock``) *before* Qdrant loads the folder, so none loads it while
another is still writing. Inside one process every store of a folder (the rule memory, the
galleries, several of each) shares one client.
"""

from __future__ import annotations

import atexit
import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from sleuth.config import Settings
from sleuth.errors import SleuthError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: Qdrant's own lock (and the retries) only
    fcntl = None  # type: ignore[assignment]

LOCK_WAIT_S = 30.0  # default of settings.qdrant.lock_wait_s
IDLE_RELEASE_S = 2.0  # default of settings.qdrant.idle_release_s
LOCK_FILE = ".sleuth.lock"  # held from before Qdrant loads the folder until after it closes it
WAITING_FILE = ".sleuth.waiting"  # touched by a process waiting for the folder
_WAITER_FRESH_S = 1.0  # a touch this recent means someone is waiting now
_POLL_S = 0.1  # the idle release's check interval
_BACKOFF_S = (0.02, 0.25)  # first and longest pause between two tries of a locked folder


class QdrantUnavailable(SleuthError):
    """The Qdrant server in ``QDRANT_URL`` cannot be reached or refused the request."""


class QdrantLocked(SleuthError):
    """The local-mode folder stayed in use by another process for longer than the lock wait."""


@dataclass(frozen=True)
class ErrorKinds:
    """How one kind of store names itself and which error classes it raises."""

    what: str = "Qdrant storage"  # "rule memory", "gallery store": used in messages
    base: type[SleuthError] = SleuthError  # a folder that cannot be created, a closed store
    unavailable: type[SleuthError] = QdrantUnavailable
    locked: type[SleuthError] = QdrantLocked


def local_folder(settings: Settings) -> Path:
    """The local-mode folder of ``settings`` (``qdrant.path``, default ``<data dir>/qdrant``)."""
    return Path(settings.qdrant.path or settings.data_dir / "qdrant").expanduser()


def lock_wait_s(settings: Settings) -> float:
    """How long a local-mode open waits for a folder another process uses (``qdrant.lock_wait_s``)."""
    value = getattr(settings.qdrant, "lock_wait_s", None)
    return max(0.0, float(LOCK_WAIT_S if value is None else value))


def idle_release_s(settings: Settings) -> float:
    """How long an unused local folder stays open (``qdrant.idle_release_s``; 0: release after each use)."""
    value = getattr(settings.qdrant, "idle_release_s", None)
    return max(0.0, float(IDLE_RELEASE_S if value is None else value))


class _StillLocked(Exception):
    """The folder stayed in use by another process until the deadline."""


class _Folder:
    """One local-mode folder as this process uses it: the client while open, the locks, the idle release.

    ``users`` counts the operations (holds) in progress; the client is closed only when it is 0.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mutex = threading.RLock()
        self.client: QdrantClient | None = None
        self.lock_fd: int | None = None
        self.users = 0
        self.last_used = 0.0
        self.idle_s = IDLE_RELEASE_S
        self.generation = 0  # one per open: an idle-release thread of an older open stops
        self.opens = 0  # how many times this process opened the folder (diagnostics, tests)

    # -- taking and giving back -----------------------------------------------------------------

    def acquire(self, wait_s: float, idle_s: float) -> QdrantClient:
        """The open client, opening the folder first (waiting up to ``wait_s`` for other processes)."""
        deadline = time.monotonic() + wait_s
        if not self.mutex.acquire(timeout=max(wait_s, 1.0)):  # another thread waits for the folder
            raise _StillLocked
        try:
            self.idle_s = idle_s
            if self.client is None:
                self._open(deadline)
            self.users += 1
            assert self.client is not None
            return self.client
        finally:
            self.mutex.release()

    def release(self, *, linger: bool = False) -> None:
        """One operation ended: close now when nobody here uses the folder and another process waits
        for it (or ``idle_s`` is 0), else leave it to the idle release. ``linger``: never close now."""
        with self.mutex:
            self.users = max(0, self.users - 1)
            self.last_used = time.monotonic()
            if self.users == 0 and self.client is not None and not linger \
                    and (self.idle_s <= 0 or self._someone_waits()):
                self.close()

    def close(self) -> None:
        """Close the client and give the folder's locks back (only when no operation is in progress)."""
        with self.mutex:
            if self.users or self.client is None:
                return
            client, fd = self.client, self.lock_fd
            self.client, self.lock_fd = None, None
            try:
                client.close()  # Qdrant's own lock and its SQLite connections (every write is committed)
            finally:
                _unlock(fd)

    # -- opening --------------------------------------------------------------------------------

    def _open(self, deadline: float) -> None:
        pause = _BACKOFF_S[0]
        while True:
            fd = self._try_lock()
            if fd is not None:
                try:
                    client = QdrantClient(path=str(self.path))
                except RuntimeError as exc:  # a process without .sleuth.lock (plain qdrant-client) holds it
                    _unlock(fd)
                    if "already accessed" not in str(exc):
                        raise
                except BaseException:
                    _unlock(fd)
                    raise
                else:
                    self.client, self.lock_fd = client, fd
                    self.opens += 1
                    self.generation += 1
                    self._stop_waiting()
                    threading.Thread(target=self._idle_release, args=(self.generation,), daemon=True,
                                     name=f"qdrant-idle-release {self.path.name}").start()
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                raise _StillLocked
            self._start_waiting()
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, _BACKOFF_S[1])

    def _try_lock(self) -> int | None:
        """``.sleuth.lock`` taken (its descriptor; -1 without fcntl), or None while another process has it."""
        if fcntl is None:  # pragma: no cover
            return -1
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return fd

    # -- waiting and idling ---------------------------------------------------------------------

    def _start_waiting(self) -> None:
        try:
            (self.path / WAITING_FILE).touch()
        except OSError:  # best effort: the holder then releases after its idle time
            pass

    def _stop_waiting(self) -> None:
        try:
            (self.path / WAITING_FILE).unlink(missing_ok=True)
        except OSError:
            pass

    def _someone_waits(self) -> bool:
        try:
            touched = (self.path / WAITING_FILE).stat().st_mtime
        except OSError:
            return False
        return time.time() - touched < _WAITER_FRESH_S

    def _idle_release(self, generation: int) -> None:
        """While the folder is open: close it once unused for ``idle_s``, or unused while another waits."""
        while True:
            time.sleep(_POLL_S)
            with self.mutex:
                if self.client is None or self.generation != generation:
                    return
                if self.users:
                    continue
                if time.monotonic() - self.last_used >= self.idle_s or self._someone_waits():
                    self.close()
                    return


def _unlock(fd: int | None) -> None:
    if fd is None or fd < 0 or fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_LOCAL: dict[Path, _Folder] = {}
_LOCAL_LOCK = threading.Lock()


_FORKED: list[_Folder] = []  # a forked child's copies of the parent's folders: kept, never closed


def _folder(path: Path) -> _Folder:
    with _LOCAL_LOCK:
        return _LOCAL.setdefault(path, _Folder(path))


def _forget_in_child() -> None:
    """After ``fork``: the child must not use (or close, which would unlock) the parent's open clients."""
    global _LOCAL_LOCK
    _FORKED.extend(_LOCAL.values())
    _LOCAL.clear()
    _LOCAL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _close_local_clients() -> None:
    """Close the local clients still open (idle): Qdrant's own ``__del__`` fails noisily at interpreter
    shutdown (a traceback on stderr after the command's last line)."""
    with _LOCAL_LOCK:
        folders = list(_LOCAL.values())
    for folder in folders:
        if folder.mutex.acquire(timeout=1):
            try:
                folder.users = 0
                folder.close()
            except Exception:  # noqa: BLE001, S110 - best effort on exit
                pass
            finally:
                folder.mutex.release()


class QdrantConnection:
    """The settings' Qdrant, and the guard that turns failures into one line.

    Server mode (``QDRANT_URL``) and a ready-made ``client`` (tests: ``QdrantClient(":memory:")``)
    keep one client for the connection's life. Local mode opens the folder on use and releases it
    when idle (see the module): wrap a batch of operations in :meth:`hold`. ``owner`` names the
    kind of store (kept for messages and callers; stores of any kind share the folder).
    """

    def __init__(self, settings: Settings, *, owner: str, errors: ErrorKinds | None = None,
                 client: QdrantClient | None = None, timeout_s: int = 5) -> None:
        self.settings = settings
        self.owner = owner
        self.errors = errors or ErrorKinds()
        self._closed = False
        self._folder: _Folder | None = None
        self._client: QdrantClient | None = None
        if client is not None:
            self.location = "in-process client"
            self._client = client
        elif settings.qdrant.url:
            self.location = settings.qdrant.url
            self._client = self._connect_server(settings.qdrant.url, timeout_s)
        else:
            folder = local_folder(settings)
            self.location = str(folder)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self.errors.base(f"cannot create the {self.errors.what} folder {folder} ({exc.strerror})",
                                       hint="set qdrant.path (SLEUTH_QDRANT__PATH) to a writable folder") from None
            self._folder = _folder(folder.resolve())

    @property
    def client(self) -> QdrantClient | None:
        """The client, or None once closed. Local mode: opened now when needed and released when idle,
        so use it at once, or inside :meth:`hold` for longer."""
        if self._closed:
            return None
        if self._folder is None:
            return self._client
        client = self._acquire()
        self._folder.release(linger=True)
        return client

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def local(self) -> bool:
        """Whether this is Qdrant local mode (a folder, opened on use)."""
        return self._folder is not None

    def _connect_server(self, url: str, timeout_s: int) -> QdrantClient:
        key_env = self.settings.qdrant.api_key_env
        api_key = os.environ.get(key_env) if key_env else None
        try:
            return QdrantClient(url=url, api_key=api_key or None, timeout=timeout_s, check_compatibility=False)
        except Exception as exc:  # noqa: BLE001 - bad URLs surface as assorted errors
            raise self.errors.unavailable(f"cannot use Qdrant URL '{url}' ({first_line(exc)})",
                                          hint="fix QDRANT_URL (e.g. http://localhost:6333) or unset it to "
                                               "use local mode") from None

    def _closed_error(self) -> SleuthError:
        return self.errors.base(f"the {self.errors.what} is closed", hint=f"open a new {self.errors.what}")

    def _acquire(self) -> QdrantClient:
        assert self._folder is not None
        wait_s = lock_wait_s(self.settings)
        try:
            return self._folder.acquire(wait_s, idle_release_s(self.settings))
        except _StillLocked:
            raise self.errors.locked(
                f"the {self.errors.what} in {self.location} stayed in use by another process for {wait_s:g} s "
                "(Qdrant local mode lets one process at a time use a folder)",
                hint="try again when that process is idle or done"
                     + (" (or raise qdrant.lock_wait_s)" if "lock_wait_s" in type(self.settings.qdrant).model_fields
                        else "")
                     + ", or run a Qdrant server and set QDRANT_URL so processes can share it") from None
        except OSError as exc:
            raise self.errors.base(f"cannot lock the {self.errors.what} folder {self.location} ({exc.strerror})",
                                   hint="set qdrant.path (SLEUTH_QDRANT__PATH) to a writable folder") from None

    @contextmanager
    def hold(self) -> Iterator[QdrantClient]:
        """The client, kept open (and other processes out of a local folder) until the block ends.

        Reentrant and shared by threads: the folder is released when the last hold ends and it was
        idle for ``qdrant.idle_release_s`` (at once when another process waits for it).
        """
        if self._closed:
            raise self._closed_error()
        if self._folder is None:
            assert self._client is not None
            yield self._client
            return
        client = self._acquire()
        try:
            yield client
        finally:
            self._folder.release()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Hold the client, and turn transport and server errors into one-line ``unavailable`` errors."""
        with self.hold():
            try:
                yield
            except ResponseHandlingException as exc:
                cause = exc.source if getattr(exc, "source", None) is not None else exc
                raise self.errors.unavailable(
                    f"cannot reach Qdrant at {self.location} ({first_line(cause)})",
                    hint="start the server or unset QDRANT_URL to use local mode") from None
            except UnexpectedResponse as exc:
                if exc.status_code in (401, 403):
                    raise self.errors.unavailable(
                        f"Qdrant at {self.location} rejected the request ({exc.status_code} {exc.reason_phrase})",
                        hint=f"put a valid API key in ${self.settings.qdrant.api_key_env}") from None
                raise self.errors.unavailable(
                    f"Qdrant at {self.location} answered {exc.status_code} {exc.reason_phrase}",
                    hint="check that QDRANT_URL points at a Qdrant server, or unset it to use local mode") from None

    def close(self) -> None:
        """Stop using the client: a server client is closed; a local folder is released now unless an
        operation of another store of this process is in progress."""
        if self._closed:
            return
        self._closed = True
        if self._folder is not None:
            self._folder.close()
            return
        client, self._client = self._client, None
        if client is not None:
            client.close()


class QdrantStore:
    """What the rule memory and the gallery store share: the connection, ``location``, ``client``,
    ``hold``, ``close`` and ``with``. A subclass sets ``self._connection`` in its ``__init__``."""

    _connection: QdrantConnection

    @property
    def location(self) -> str:
        """The server URL or local folder the store lives in."""
        return self._connection.location

    @property
    def client(self) -> QdrantClient:
        """The client (local mode: open now, released when idle; use it inside :meth:`hold` for a batch)."""
        client = self._connection.client
        if client is None:
            raise self._connection.errors.base(f"the {self._connection.errors.what} is closed",
                                               hint=f"open a new {type(self).__name__}")
        return client

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the local folder open for a batch of operations (one read-modify-write, one graph node):
        other processes wait until the block ends. Server mode: nothing to do."""
        if self._connection.closed:
            raise self._connection.errors.base(f"the {self._connection.errors.what} is closed",
                                               hint=f"open a new {type(self).__name__}")
        with self._connection.hold():
            yield

    def close(self) -> None:
        """Stop using the store (and release the local folder now, when no other store here is using it)."""
        connection = getattr(self, "_connection", None)  # None when __init__ failed before connecting
        if connection is not None:
            connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160] or type(exc).__name__
