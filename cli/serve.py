"""``sleuth serve``: run the model tools as a Ray Serve application, show it, stop it.

``sleuth serve tools`` starts a Ray instance sized to this machine (or joins one: a local
cluster already running, or ``--address``), deploys the application from the Serve config
(``--config``, ``tools.serve_config`` or the packaged ``serve/tools.yaml``), waits until every
tool is loaded and healthy, prints the deployments with their resources and the startup time,
then serves until Ctrl-C (``--detach``: leaves it running and returns).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sleuth.cli.runner import err, fail, request

if TYPE_CHECKING:
    from sleuth.serve.app import DeploymentInfo

serve_app = typer.Typer(help="Run the model tools on Ray Serve (replicas, batching, CPUs/GPUs from a YAML).",
                        no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)

AddressOption = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster to use ('auto', 'HOST:6379', 'ray://HOST:10001'); default: tools.ray_address, "
    "else a local cluster already running, else a new local instance.")]
_STATUS_STYLE = {"HEALTHY": "green", "UPDATING": "cyan", "UPSCALING": "cyan", "DOWNSCALING": "cyan",
                 "UNHEALTHY": "bold red", "DEPLOY_FAILED": "bold red"}


@serve_app.command("tools")
def tools(
    config: Annotated[Path | None, typer.Option(
        "--config", help="Ray Serve YAML (default: tools.serve_config, else the packaged serve/tools.yaml).")] = None,
    address: AddressOption = None,
    detach: Annotated[bool, typer.Option(
        "--detach/--block", help="Return once the tools are ready, leaving them running (default: serve until "
        "Ctrl-C).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every tool to be ready.")] = 300.0,
) -> None:
    """Deploy the model tools (embedder, captioner, sampler, proposer) on Ray Serve and wait until they are ready."""
    from sleuth.serve.app import config_for, deploy, describe, wait_until_ready

    started = time.monotonic()
    with request("serve tools") as settings:
        app_name = settings.tools.serve_app
        schema = config_for(settings, config)
        owned, where = _start_ray(address or settings.tools.ray_address, detach)
        err.print(f"[dim]{where}; deploying '{app_name}'...[/]")
        deploy(schema)
        wait_until_ready(app_name, timeout_s=timeout,
                         on_change=lambda name, status: err.print(
                             f"[dim]  {time.monotonic() - started:5.1f} s  {name}: {status.lower()}[/]"))
        rows = describe(app_name)
    _print_deployments(rows)
    out.print(f"[green]'{app_name}' ready in {time.monotonic() - started:.1f} s[/]")
    if detach:
        out.print("graphs reach it with SLEUTH_TOOLS__BACKEND=ray; stop it with `sleuth serve stop`")
        return
    out.print("serving; Ctrl-C to stop")
    _serve_until_interrupted(app_name, shutdown_cluster=owned)


@serve_app.command("status")
def status(
    address: AddressOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deployments as JSON.")] = False,
) -> None:
    """Show the tools app: each deployment's health, replicas and resources."""
    from sleuth.serve.app import describe
    from sleuth.tools.remote import application_status, not_running

    with request("serve status") as settings:
        app_name = settings.tools.serve_app
        _join(address or settings.tools.ray_address, app_name)
        app = application_status(app_name)
        if app is None:
            raise not_running(app_name)
        rows = describe(app_name)
    if as_json:
        import json

        out.print_json(json.dumps({"app": app_name, "status": str(app.status.value),
                                   "deployments": [row.__dict__ for row in rows]}, default=str))
    else:
        out.print(f"'{app_name}': {str(app.status.value).lower()}")
        _print_deployments(rows)
    if app.status != "RUNNING":
        raise fail(f"'{app_name}' is {str(app.status.value).lower()}", 1)


@serve_app.command("stop")
def stop(address: AddressOption = None) -> None:
    """Delete the tools app from the cluster (the Ray cluster itself keeps running)."""
    from ray import serve
    from sleuth.tools.remote import application_status, not_running

    with request("serve stop") as settings:
        app_name = settings.tools.serve_app
        _join(address or settings.tools.ray_address, app_name)
        if application_status(app_name) is None:
            raise not_running(app_name)
        serve.delete(app_name)
    out.print(f"'{app_name}' stopped")


def _join(address: str | None, app_name: str) -> None:
    from sleuth.tools.remote import connect, not_running

    try:
        connect(address)
    except ConnectionError:
        raise not_running(app_name, f"is not running (no Ray cluster answered at {address})" if address
                          else "is not running") from None


def _start_ray(address: str | None, detach: bool) -> tuple[bool, str]:
    """Connect to Ray; returns (whether this process started the instance and owns it, a description).

    With an address, or a local cluster already running, join it. Otherwise start one sized to
    this machine: inside this process (it ends with the command), or with ``ray start --head``
    when detaching, so that it outlives the command.
    """
    import ray
    from sleuth.tools.remote import connect

    if address:
        connect(address)
        return False, f"joined Ray at {address}"
    try:
        connect("auto")
        return False, "joined the local Ray cluster"
    except ConnectionError:
        pass
    cpus = os.cpu_count() or 1
    if detach:
        ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        result = subprocess.run([ray_cli, "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false",
                                 "--disable-usage-stats"], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise fail(f"`ray start --head` failed: {last}")
        connect("auto")
        return False, f"started a local Ray cluster ({cpus} CPUs, `ray stop` ends it)"
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    return True, f"started Ray in this process ({cpus} CPUs)"


def _serve_until_interrupted(app_name: str, *, shutdown_cluster: bool) -> None:
    """Sleep until Ctrl-C or SIGTERM, then take the app down (and the Ray instance this process started)."""
    import ray
    from ray import serve

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("[dim]stopping...[/]")
    if shutdown_cluster:
        ray.shutdown()  # the in-process instance takes Serve and every replica with it
    else:
        serve.delete(app_name)
    out.print(f"'{app_name}' stopped")


def _print_deployments(rows: list[DeploymentInfo]) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("tool", "status", "replicas", "CPU", "GPU", "ongoing", "options"):
        table.add_column(column)
    for row in rows:
        resources = dict(row.resources)
        cpu, gpu = resources.pop("CPU", 0.0), resources.pop("GPU", 0.0)
        replicas = f"{row.running}/{row.target}"
        if row.autoscaling:
            replicas += f" (auto {row.autoscaling[0]}-{row.autoscaling[1]})"
        extra = [f"{key}={value:g}" for key, value in resources.items()]
        extra += _options(row.user_config or {})
        style = _STATUS_STYLE.get(row.status, "")
        status_text = f"[{style}]{row.status.lower()}[/]" if style else row.status.lower()
        if row.message and row.status != "HEALTHY":
            status_text += f" ({row.message})"
        table.add_row(row.name, status_text, replicas, f"{cpu:g}", f"{gpu:g}",
                      str(row.max_ongoing_requests or "-"), " ".join(extra) or "-")
    out.print(table)


def _options(user_config: dict[str, Any]) -> list[str]:
    """A deployment's user_config, short: batching as 'batch 16/5ms', the rest as key=value."""
    options = dict(user_config)
    parts = []
    if "max_batch_size" in options:
        wait = options.pop("batch_wait_timeout_s", None)
        parts.append(f"batch {options.pop('max_batch_size')}" + (f"/{float(wait) * 1000:g}ms" if wait else ""))
    return parts + [f"{key}={value}" for key, value in options.items()]
