"""The Qdrant connection shared by the rule memory and the galleries.

Where the data lives comes from ``settings.qdrant``: the server at ``url`` (``QDRANT_URL``) with
the API key read from the variable named by ``api_key_env``, else Qdrant local mode in ``path``
(default ``<data dir>/qdrant``). Failures are one-line :class:`~sleuth.errors.SleuthError`\\ s:
an unreachable or refusing server, a folder that cannot be created, and a local folder that
another process holds (local mode is single-process: a second process gets an error, not a wait).

Inside one process each *kind* of store (``owner``: the rule memory, the galleries) opens a local
folder once, as a process of its own would; stores of different kinds share the one client, so
a graph that reads rules and searches a gallery does not lock itself out.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from sleuth.config import Settings
from sleuth.errors import SleuthError


class QdrantUnavailable(SleuthError):
    """The Qdrant server in ``QDRANT_URL`` cannot be reached or refused the request."""


class QdrantLocked(SleuthError):
    """The local-mode folder is open in another process (Qdrant local mode is single-process)."""


@dataclass(frozen=True)
class ErrorKinds:
    """How one kind of store names itself and which error classes it raises."""

    what: str = "Qdrant storage"  # "rule memory", "gallery store": used in messages
    base: type[SleuthError] = SleuthError  # a folder that cannot be created
    unavailable: type[SleuthError] = QdrantUnavailable
    locked: type[SleuthError] = QdrantLocked


@dataclass
class _Shared:
    client: QdrantClient
    owners: set[str] = field(default_factory=set)


_LOCAL: dict[Path, _Shared] = {}
_LOCAL_LOCK = threading.Lock()


@atexit.register
def _close_shared_clients() -> None:
    """Close local clients a store left open: ``_LOCAL`` keeps them alive until interpreter shutdown, where
    Qdrant's own ``__del__`` fails noisily (a traceback on stderr after the command's last line)."""
    with _LOCAL_LOCK:
        for shared in _LOCAL.values():
            try:
                shared.client.close()
            except Exception:  # noqa: BLE001, S110 - best effort on exit
                pass
        _LOCAL.clear()


def local_folder(settings: Settings) -> Path:
    """The local-mode folder of ``settings`` (``qdrant.path``, default ``<data dir>/qdrant``)."""
    return Path(settings.qdrant.path or settings.data_dir / "qdrant").expanduser()


class QdrantConnection:
    """One open client with the settings' location, and the guard that turns failures into one line.

    ``client``: use this ready-made client (tests: ``QdrantClient(":memory:")``). ``owner``: the
    kind of store; a second open of the same local folder by the same kind in one process is
    refused like one from another process.
    """

    def __init__(self, settings: Settings, *, owner: str, errors: ErrorKinds | None = None,
                 client: QdrantClient | None = None, timeout_s: int = 5) -> None:
        self.settings = settings
        self.owner = owner
        self.errors = errors or ErrorKinds()
        self._folder: Path | None = None
        if client is not None:
            self.location = "in-process client"
            self._client: QdrantClient | None = client
        elif settings.qdrant.url:
            self.location = settings.qdrant.url
            self._client = self._connect_server(settings.qdrant.url, timeout_s)
        else:
            folder = local_folder(settings)
            self.location = str(folder)
            self._client = self._open_local(folder)
            self._folder = folder.resolve()

    @property
    def client(self) -> QdrantClient | None:
        """The client, or None once closed."""
        return self._client

    @property
    def closed(self) -> bool:
        return self._client is None

    def _connect_server(self, url: str, timeout_s: int) -> QdrantClient:
        key_env = self.settings.qdrant.api_key_env
        api_key = os.environ.get(key_env) if key_env else None
        try:
            return QdrantClient(url=url, api_key=api_key or None, timeout=timeout_s, check_compatibility=False)
        except Exception as exc:  # noqa: BLE001 - bad URLs surface as assorted errors
            raise self.errors.unavailable(f"cannot use Qdrant URL '{url}' ({first_line(exc)})",
                                          hint="fix QDRANT_URL (e.g. http://localhost:6333) or unset it to "
                                               "use local mode") from None

    def _open_local(self, folder: Path) -> QdrantClient:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.errors.base(f"cannot create the {self.errors.what} folder {folder} ({exc.strerror})",
                                   hint="set qdrant.path (SLEUTH_QDRANT__PATH) to a writable folder") from None
        key = folder.resolve()
        with _LOCAL_LOCK:
            shared = _LOCAL.get(key)
            if shared is not None and self.owner not in shared.owners:
                shared.owners.add(self.owner)
                return shared.client
            if shared is None:
                try:
                    shared = _Shared(QdrantClient(path=str(folder)), {self.owner})
                except RuntimeError as exc:
                    if "already accessed" not in str(exc):
                        raise
                    shared = None
                if shared is not None:
                    _LOCAL[key] = shared
                    return shared.client
        raise self.errors.locked(
            f"the {self.errors.what} in {folder} is open in another process (Qdrant local mode is "
            "single-process)",
            hint="wait for that process to finish, or run a Qdrant server and set QDRANT_URL")

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn transport and server errors into one-line ``unavailable`` errors."""
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
        """Release the client (a shared local client, and the folder's lock, when its last user closes)."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._folder is None:
            client.close()
            return
        with _LOCAL_LOCK:
            shared = _LOCAL.get(self._folder)
            if shared is None or shared.client is not client:
                client.close()
                return
            shared.owners.discard(self.owner)
            if not shared.owners:
                del _LOCAL[self._folder]
                client.close()


class QdrantStore:
    """What the rule memory and the gallery store share: the connection, ``location``, ``client``,
    ``close`` and ``with``. A subclass sets ``self._connection`` in its ``__init__``."""

    _connection: QdrantConnection

    @property
    def location(self) -> str:
        """The server URL or local folder the store lives in."""
        return self._connection.location

    @property
    def client(self) -> QdrantClient:
        client = self._connection.client
        if client is None:
            raise self._connection.errors.base(f"the {self._connection.errors.what} is closed",
                                               hint=f"open a new {type(self).__name__}")
        return client

    def close(self) -> None:
        """Release the client (and the local folder's lock)."""
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
