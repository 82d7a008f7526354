"""The Ray Serve application of Sleuth's model tools, and the Serve config that deploys it.

The application is the five tool deployments (:mod:`sleuth.serve.deployments`) bound under one
ingress. A Serve config names it with ``import_path: sleuth.serve.app:build_app``; the same YAML
runs under ``sleuth serve tools``, ``serve run``/``serve deploy`` and as a KubeRay RayService's
``serveConfigV2``. The config's ``args`` reach every replica, so all replicas build the same
tools: ``config`` (a sleuth.toml path) and ``settings`` (nested overrides).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray.serve import Application
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema
from sleuth.config import Settings
from sleuth.errors import ConfigError
from sleuth.serve.deployments import Captioner, Embedder, Proposer, Retriever, Sampler, ToolsIngress, deep_merge
from sleuth.tools.remote import ServeError

IMPORT_PATH = "sleuth.serve.app:build_app"


class ToolsAppArgs(BaseModel):
    """The application's ``args`` in a Serve config."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(default=None, description="A sleuth.toml path, read on each replica's node.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Settings overrides, nested as in sleuth.toml (e.g. {tools: {captioner: "
        "{kind: transformers, model: /models/vlm}}}); they win over `config` and the replicas' environment.")


def build_app(args: dict[str, Any] | ToolsAppArgs) -> Application:
    """The application builder named by ``import_path``: each tool deployment, bound under the ingress."""
    parsed = args if isinstance(args, ToolsAppArgs) else ToolsAppArgs.model_validate(args or {})
    shared = parsed.model_dump()
    return ToolsIngress.bind(Embedder.bind(shared), Captioner.bind(shared), Sampler.bind(shared),
                             Proposer.bind(shared), Retriever.bind(shared))


def packaged_config() -> Path:
    """The Serve config shipped with Sleuth, sized for a small CPU machine."""
    return Path(str(resources.files("sleuth.serve") / "tools.yaml"))


def load_config(path: Path | None = None) -> ServeDeploySchema:
    """Read and validate a Serve config (the format of ``serve deploy`` and ``serveConfigV2``)."""
    source = path or packaged_config()
    try:
        data = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the Serve config {source}: {exc.strerror}",
                          hint="pass an existing YAML with --config or set tools.serve_config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the Serve config {source} is not valid YAML: {str(exc).splitlines()[0]}",
                          hint="fix the YAML syntax") from None
    try:
        return ServeDeploySchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise ConfigError(f"invalid Serve config {source}: '{where}': {first['msg']}",
                          hint="see docs/serving.md for the fields") from None


def tools_application(config: ServeDeploySchema, app_name: str) -> ServeApplicationSchema:
    """The config's tools application: the one named ``app_name``, else the only one that runs our builder."""
    ours = [app for app in config.applications if app.import_path == IMPORT_PATH]
    named = [app for app in config.applications if app.name == app_name]
    if named:
        return named[0]
    if len(ours) == 1:
        return ours[0]
    raise ConfigError(f"the Serve config has no application named '{app_name}'",
                      hint=f"name it {app_name!r} (tools.serve_app) with import_path {IMPORT_PATH}")


def config_for(settings: Settings, path: Path | None = None) -> ServeDeploySchema:
    """The Serve config to deploy for ``settings``.

    The tools application is named ``settings.tools.serve_app`` (so the 'ray' backend finds it).
    Its ``args.settings`` start from what is set in ``settings`` (this process's sleuth.toml,
    SLEUTH_* variables and explicit values; defaults are left to the replicas), with the YAML's own
    ``args.settings`` applied on top. ``args.config`` fills in what neither sets.
    """
    config = load_config(path or settings.tools.serve_config)
    app = tools_application(config, settings.tools.serve_app)
    try:
        args = ToolsAppArgs.model_validate(app.args or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid args of application '{app.name}': "
                          f"'{'.'.join(str(p) for p in first['loc'])}': {first['msg']}",
                          hint="args takes `config` (a sleuth.toml path) and `settings` (overrides)") from None
    args.settings = deep_merge(settings.model_dump(mode="json", exclude_unset=True), args.settings)
    resolved = app.model_copy(update={"name": settings.tools.serve_app, "args": args.model_dump()})
    others = [other for other in config.applications if other is not app]
    return config.model_copy(update={"applications": [resolved, *others]})


def deploy(config: ServeDeploySchema) -> None:
    """Start Serve on the connected cluster with the config's proxy options and apply the config.

    This is what ``serve run <config.yaml>`` does, and what KubeRay does through the dashboard:
    the Serve controller imports ``import_path``, calls the builder with ``args`` and applies each
    deployment's options from the config. It returns at once; see :func:`wait_until_ready`.
    """
    from ray import serve
    from ray.serve.context import _get_global_client

    serve.start(proxy_location=config.proxy_location, http_options=config.http_options.model_dump(),
                logging_config=config.logging_config)
    client = _get_global_client()  # Ray has no public call that applies a whole config; `serve run` uses this one
    assert client is not None  # serve.start just made sure a controller runs
    client.deploy_apps(config)


@dataclass(frozen=True)
class DeploymentInfo:
    """One deployment of a running app, as ``sleuth serve`` prints it."""

    name: str
    status: str
    running: int
    target: int
    resources: dict[str, float]
    max_ongoing_requests: int | None
    autoscaling: tuple[int, int] | None
    user_config: dict[str, Any] | None
    message: str


def serve_details() -> Any:
    """Serve's ``ServeInstanceDetails`` (resources, replicas, configs) of the connected cluster."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    client = _get_global_client(raise_if_no_controller_running=False)
    return ServeInstanceDetails(**client.get_serve_details()) if client else None


def describe(app_name: str) -> list[DeploymentInfo]:
    """The deployments of ``app_name`` with their replicas and resources; empty when it is not deployed."""
    details = serve_details()
    app = details.applications.get(app_name) if details else None
    if app is None:
        return []
    rows = []
    for name, deployment in app.deployments.items():
        options = deployment.deployment_config
        autoscaling = _set_or_none(options, "autoscaling_config")
        if isinstance(autoscaling, dict):
            scale = (int(autoscaling.get("min_replicas", 1)), int(autoscaling.get("max_replicas", 1)))
        elif autoscaling is not None:
            scale = (int(autoscaling.min_replicas), int(autoscaling.max_replicas))
        else:
            scale = None
        rows.append(DeploymentInfo(
            name=name, status=str(deployment.status.value), target=deployment.target_num_replicas,
            running=sum(1 for replica in deployment.replicas if replica.state == "RUNNING"),
            resources={key: float(value) for key, value in (deployment.required_resources or {}).items()},
            max_ongoing_requests=_set_or_none(options, "max_ongoing_requests"),
            autoscaling=scale, user_config=_set_or_none(options, "user_config"),
            message=failure_reason(deployment.message) if deployment.message else ""))
    return rows


def _set_or_none(options: Any, field: str) -> Any:
    value = getattr(options, field, None)
    return None if value is None or type(value).__name__ == "DEFAULT" else value


def failure_reason(message: str) -> str:
    """The last line of a Serve status message (often a replica's traceback), without the exception type."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = re.sub(r"\x1b\[[0-9;]*m", "", lines[-1])
    return re.sub(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|NotReady)): ", "", last)[:300]


def wait_until_ready(app_name: str, *, timeout_s: float = 300.0, poll_s: float = 0.25,
                     on_change: Callable[[str, str], None] | None = None) -> None:
    """Block until ``app_name`` is RUNNING with every deployment HEALTHY.

    ``on_change(deployment, status)`` is called whenever a deployment's status changes. Raises
    :class:`ServeError` with the failing tool's one-line reason when the app fails to deploy, or
    when it is not ready within ``timeout_s``.
    """
    from ray import serve

    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        app = serve.status().applications.get(app_name)
        if app is not None:
            for name, deployment in app.deployments.items():
                status = str(deployment.status.value)
                if seen.get(name) != status:
                    seen[name] = status
                    if on_change:
                        on_change(name, status)
            healthy = app.deployments and all(d.status == "HEALTHY" for d in app.deployments.values())
            if app.status == "RUNNING" and healthy:
                return
            if app.status == "DEPLOY_FAILED":
                failed = [(name, d) for name, d in app.deployments.items()
                          if d.status in ("DEPLOY_FAILED", "UNHEALTHY")]
                where, why = ((failed[0][0], failure_reason(failed[0][1].message)) if failed
                              else ("build", failure_reason(app.message)))
                raise ServeError(f"Ray Serve app '{app_name}' failed to start: {where}: {why}",
                                 hint="fix that tool's settings (`sleuth doctor`) or the Serve config; "
                                 "replica logs are under the Ray session's logs/serve folder")
        if time.monotonic() > deadline:
            waiting = [f"{name} {status.lower()}" for name, status in seen.items() if status != "HEALTHY"]
            detail = ", ".join(waiting) or "the application was not created"
            raise ServeError(f"Ray Serve app '{app_name}' is not ready after {timeout_s:.0f} s ({detail})",
                             hint="a replica may wait for CPUs/GPUs the cluster lacks: check ray_actor_options "
                             "in the Serve config and `sleuth serve status`, or raise --timeout")
        time.sleep(poll_s)
