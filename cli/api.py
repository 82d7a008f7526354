"""``sleuth serve api``: the HTTP API (OpenAPI at /docs) under uvicorn, or as a Ray Serve app with ``--ray``.

The API always needs a key: ``SLEUTH_API_KEY``, or one generated for the run and printed here.
It answers only its own host names and same-origin requests (:mod:`sleuth.serve.access`). Binding
to a non-loopback address prints a warning: the key then travels over plain HTTP.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from sleuth.cli.runner import err, request

if TYPE_CHECKING:
    from sleuth.config import Settings
    from sleuth.serve.access import Access

out = Console(highlight=False, soft_wrap=True)


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    ray: Annotated[bool, typer.Option("--ray", help="Deploy it as the Ray Serve app 'sleuth-api' (route /) on a "
                                      "local or joined Ray cluster instead of running uvicorn here.")] = False,
) -> None:
    """Serve the HTTP API: upload videos, run detect jobs, fetch events and reports, chat (SSE)."""
    from sleuth.serve.access import HOSTS_ENV, KEY_ENV, Access

    access = Access.for_server(host)
    announce_access(access, host, "API")
    if ray:
        os.environ[KEY_ENV] = access.token  # the replicas of a Ray started here inherit the environment
        os.environ[HOSTS_ENV] = ",".join(access.hosts)
        _serve_on_ray(host, port)
        return
    import uvicorn
    from sleuth.serve.api import create_api

    with request("serve api") as settings:
        app = create_api(settings, access=access)
        warn_about_folders(settings)
    out.print(f"Sleuth API on http://{host}:{port}/v1 (docs: http://{host}:{port}/docs); Ctrl-C to stop")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def announce_access(access: Access, host: str, what: str, *, show_key: bool = True) -> None:
    """Say how to authenticate (the generated key, once) and warn about a non-loopback address."""
    from sleuth.serve.access import KEY_ENV, is_loopback

    if access.generated and show_key:
        err.print(f"{what} key for this run (no {KEY_ENV} set): [bold]{access.token}[/]")
    if not is_loopback(host):
        err.print(f"[bold yellow]warning:[/] listening on {host}: other machines can reach the {what} over plain "
                  f"HTTP, and the key with it; prefer 127.0.0.1 behind an HTTPS proxy. Host names accepted: "
                  f"{', '.join(access.hosts)}")


def warn_about_folders(settings: Settings) -> None:
    if not settings.data_dirs:
        err.print("[dim]no data folders configured: only uploaded videos can be read (add folders with "
                  "data_dirs in sleuth.toml or SLEUTH_DATA_DIRS)[/]")


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
