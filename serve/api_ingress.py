"""The HTTP API (:func:`sleuth.serve.api.create_api`) as a Ray Serve ingress deployment.

A Serve config names the application with ``import_path: sleuth.serve.api_ingress:build_api_app``
and the same ``args`` as the tools app: ``config`` (a sleuth.toml path on the replica's node) and
``settings`` (nested overrides). ``sleuth serve api --ray`` deploys it as ``sleuth-api`` at route
prefix ``/``. Replicas read ``SLEUTH_API_KEY``, ``SLEUTH_ALLOWED_HOSTS`` and the ``SLEUTH_API_*``
limits from their own environment (keys never travel in the config); ``sleuth serve api --ray`` sets
the first two for a Ray it starts. A replica without ``SLEUTH_API_KEY`` generates a key nobody
knows, so on a cluster of your own, set it in the cluster's environment.

Ray builds an ingress's FastAPI app on the replica by calling a function with no arguments after
the deployment's constructor has run, so the constructor builds the app from its ``args`` and
leaves it for that function: one replica is one process, so a module-level slot is enough.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from sleuth.serve.app import ToolsAppArgs

IMPORT_PATH = "sleuth.serve.api_ingress:build_api_app"
APP_NAME = "sleuth-api"

_replica_app: FastAPI | None = None


def _replica_asgi_app() -> FastAPI:
    """Ray's app builder: the app this replica's constructor made."""
    if _replica_app is None:
        raise RuntimeError("the Sleuth API deployment was not constructed")
    return _replica_app


@serve.deployment(name="SleuthAPI", max_ongoing_requests=64)
@serve.ingress(_replica_asgi_app)
class ApiIngress:
    """One replica of the HTTP API: its settings come from the application's args."""

    def __init__(self, args: dict[str, Any]) -> None:
        # Through the imported module, not `global`: Ray may ship this class by value, with a copy of
        # its globals, while the builder above is looked up in the real module.
        from sleuth.serve import api_ingress
        from sleuth.serve.api import create_api
        from sleuth.serve.deployments import replica_settings

        api_ingress._replica_app = create_api(replica_settings(args))


def build_api_app(args: dict[str, Any] | ToolsAppArgs | None = None) -> Application:
    """The application builder named by ``import_path``: the API ingress bound to its args."""
    parsed = args if isinstance(args, ToolsAppArgs) else ToolsAppArgs.model_validate(args or {})
    return ApiIngress.bind(parsed.model_dump())  # type: ignore[attr-defined]  # a Deployment once decorated
