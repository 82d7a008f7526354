"""The 'ray' backend of :func:`sleuth.tools.toolset.open_tools`: the tools as Ray Serve handles.

The client side of the tools' Ray Serve application lives with the tools (``sleuth.serve`` builds
and runs the application; the deployment names below are the contract between the two), so the
tools never import the layer above them.

:class:`RayServeTools` connects to the Ray cluster where ``sleuth serve tools`` (or a KubeRay
RayService) runs the tools application, takes a handle per deployment by name and exposes the
same methods as the in-process tools. Every call is a traced ``execute_tool`` span here, and a
tool's own :class:`~sleuth.errors.SleuthError` comes back as itself.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sleuth import telemetry
from sleuth.config import Settings
from sleuth.errors import SleuthError

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle
    from sleuth.tools.frames import Frame

DEFAULT_TIMEOUT_S = 300.0

# Deployment names of the tools application (sleuth.serve.deployments deploys them under these).
EMBEDDER = "Embedder"
CAPTIONER = "Captioner"
SAMPLER = "Sampler"
PROPOSER = "Proposer"
RETRIEVER = "Retriever"
TOOL_DEPLOYMENTS = (EMBEDDER, CAPTIONER, SAMPLER, PROPOSER, RETRIEVER)


class ServeError(SleuthError):
    """The Ray cluster or the Serve app of the tools cannot be reached or is not ready."""


class ToolCallError(SleuthError):
    """A tool call on Ray Serve failed or timed out."""


def not_running(app_name: str, why: str = "is not running",
                hint: str = "start it with `sleuth serve tools`") -> ServeError:
    return ServeError(f"Ray Serve app '{app_name}' {why}", hint=hint)


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ('auto': the local one) unless this process already has.

    Raises ConnectionError at once when nothing listens there: ``ray.init`` itself retries a dead
    address for minutes, and 'auto' reads the address file of the last ``ray start``, which
    outlives the cluster it names.
    """
    import ray

    if ray.is_initialized():
        return
    _probe(address or "auto")
    ray.init(address=address or "auto", log_to_driver=False, logging_level=logging.ERROR)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # no INFO lines in the caller's output


def _probe(address: str, timeout_s: float = 3.0) -> None:
    """Raise ConnectionError unless a TCP connection to the cluster ``address`` resolves to opens."""
    from ray._private.services import canonicalize_bootstrap_address

    if address.startswith("ray://"):  # Ray Client: the client server's host:port
        target: str | None = address.removeprefix("ray://").split("/")[0]
    else:
        try:
            target = canonicalize_bootstrap_address(address)
        except (ValueError, ConnectionError) as exc:
            raise ConnectionError(str(exc)) from None
    if not target:
        raise ConnectionError("no Ray cluster is running on this machine")
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError):
        raise ConnectionError(f"no Ray cluster answers at {target}") from None


def application_status(app_name: str) -> Any:
    """Serve's ``ApplicationStatusOverview`` of ``app_name``, or None when it is not deployed."""
    from ray import serve

    return serve.status().applications.get(app_name)


class RayServeTools:
    """Handles to the tool deployments of a running Serve app, behind the :class:`ToolSet` methods."""

    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        from ray import serve

        self.app_name = settings.tools.serve_app
        self.timeout_s = timeout_s
        try:
            connect(settings.tools.ray_address)
        except ConnectionError:
            where = settings.tools.ray_address
            raise not_running(self.app_name, f"is not running (no Ray cluster answered at {where})" if where
                              else "is not running") from None
        status = application_status(self.app_name)
        if status is None:
            raise not_running(self.app_name)
        if status.status != "RUNNING":
            state = str(status.status.value).lower().replace("_", " ")
            raise not_running(self.app_name, f"is {state}", hint="wait until `sleuth serve status` shows it running"
                              if state == "deploying" else "`sleuth serve status` shows which tool fails and why")
        self._handles: dict[str, DeploymentHandle] = {
            name: serve.get_deployment_handle(name, app_name=self.app_name) for name in TOOL_DEPLOYMENTS}
        self.embedder = RemoteEmbedder(self)
        self.captioner = RemoteCaptioner(self)
        self.sampler = RemoteSampler(self)
        self.retriever = RemoteRetriever(self)

    def proposer(self, scene: str) -> RemoteProposer:
        return RemoteProposer(self, scene)

    def call(self, deployment: str, method: str, *args: Any) -> Any:
        """``handle.<method>.remote(*args).result()``, with errors turned into one-line SleuthErrors."""
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import DeploymentUnavailableError

        with telemetry.tool_span(f"{deployment}.{method}") as span:
            span.set_attribute("sleuth.tool.backend", "ray")
            try:
                handle = getattr(self._handles[deployment], method)
                return handle.remote(*args).result(timeout_s=self.timeout_s)
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                if isinstance(cause, SleuthError):
                    raise cause from None
                first = (str(cause).splitlines() or [""])[-1][:200]
                raise ToolCallError(f"{deployment}.{method} failed on Ray Serve: {type(cause).__name__}: {first}",
                                    hint=f"see the replica logs of '{deployment}' (ray logs / the dashboard)") from None
            except TimeoutError:
                raise ToolCallError(f"{deployment}.{method} got no answer within {self.timeout_s:.0f} s",
                                    hint=f"check `sleuth serve status`; add replicas to '{deployment}' "
                                    "in the Serve config if it is overloaded") from None
            except (RayActorError, DeploymentUnavailableError):
                raise not_running(self.app_name, "stopped answering") from None


class RemoteEmbedder:
    def __init__(self, tools: RayServeTools) -> None:
        self._tools = tools

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self._tools.call(EMBEDDER, "embed", list(texts))


class RemoteCaptioner:
    def __init__(self, tools: RayServeTools) -> None:
        self._tools = tools

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        return self._tools.call(CAPTIONER, "caption", list(frames))


class RemoteSampler:
    def __init__(self, tools: RayServeTools) -> None:
        self._tools = tools

    def sample(self, scores: Sequence[float] | np.ndarray) -> list[int]:
        return self._tools.call(SAMPLER, "sample", np.asarray(scores, dtype=np.float64))


class RemoteProposer:
    """The scene's proposer on the Proposer deployment (which caches its checkpoint)."""

    def __init__(self, tools: RayServeTools, scene: str) -> None:
        self._tools = tools
        self.scene = scene

    def score(self, frames: Sequence[Frame]) -> Any:
        return self._tools.call(PROPOSER, "score", self.scene, list(frames))


class RemoteRetriever:
    """The Retriever deployment behind the :class:`~sleuth.tools.retriever.Retriever` interface.

    ``name``, ``vector`` and ``dimension`` are asked of the replica once, on first use.
    """

    def __init__(self, tools: RayServeTools) -> None:
        self._tools = tools
        self._info: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _described(self) -> dict[str, Any]:
        with self._lock:
            if self._info is None:
                self._info = dict(self._tools.call(RETRIEVER, "info"))
            return self._info

    @property
    def name(self) -> str:
        return str(self._described()["name"])

    @property
    def vector(self) -> str:
        return str(self._described()["vector"])

    @property
    def dimension(self) -> int:
        return int(self._described()["dimension"])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._tools.call(RETRIEVER, "embed_queries", list(texts))

    def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
        return self._tools.call(RETRIEVER, "embed_items", list(images), list(captions))
