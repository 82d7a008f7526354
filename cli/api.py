"""``sleuth serve api``: the HTTP API (OpenAPI at /docs) under uvicorn, or as a Ray Serve app with ``--ray``.

Without ``SLEUTH_API_KEY`` in the environment, anyone who reaches the port can use the API, so
the default host is loopback and a warning is printed; set the key before binding elsewhere.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer
from rich.console import Console
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    ray: Annotated[bool, typer.Option("--ray", help="Deploy it as the Ray Serve app 'sleuth-api' (route /) on a "
                                      "local or joined Ray cluster instead of running uvicorn here.")] = False,
) -> None:
    """Serve the HTTP API: upload videos, run detect jobs, fetch events and reports, chat (SSE)."""
    from sleuth.serve.api import API_KEY_ENV

    if not os.environ.get(API_KEY_ENV):
        where = "only this machine can reach it" if _loopback(host) else "ANYONE who reaches this host can use it"
        err.print(f"[yellow]warning:[/] {API_KEY_ENV} is not set: the API needs no key ({where}); "
                  f"set {API_KEY_ENV} to require one")
    if ray:
        _serve_on_ray(host, port)
        return
    import uvicorn
    from sleuth.serve.api import create_api

    with request("serve api") as settings:
        app = create_api(settings)
    out.print(f"Sleuth API on http://{host}:{port}/v1 (docs: http://{host}:{port}/docs); Ctrl-C to stop")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_on_ray(host: str, port: int) -> None:
    from ray import serve
    from sleuth.cli.serve import _serve_until_interrupted, _start_ray
    from sleuth.serve.api_ingress import APP_NAME, build_api_app
    from sleuth.serve.app import wait_until_ready

    with request("serve api --ray") as settings:
        owned, where = _start_ray(settings.tools.ray_address, detach=False)
        err.print(f"[dim]{where}; deploying '{APP_NAME}'...[/]")
        serve.start(http_options={"host": host, "port": port})
        args = {"settings": settings.model_dump(mode="json", exclude_unset=True)}
        serve.run(build_api_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        wait_until_ready(APP_NAME, timeout_s=120)
    out.print(f"'{APP_NAME}' on http://{host}:{port}/v1 (docs: /docs); Ctrl-C to stop")
    _serve_until_interrupted(APP_NAME, shutdown_cluster=owned)
