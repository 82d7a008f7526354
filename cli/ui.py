"""``sleuth ui``: the investigate agent as a chat in the browser (Gradio, served from this machine).

Prints the local address (with the token the page needs) and serves until Ctrl-C. Nothing is
fetched from the internet; the page works offline. Each browser tab keeps its own thread
(``?thread=ID`` reopens one).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def ui(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: reachable from other machines).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    model: Annotated[str | None, typer.Option(
        help="LLM (e.g. qwen2.5-coder-0.5b); default: llm.agent_model, the packaged 1.5B.")] = None,
) -> None:
    """Chat with the investigate agent in the browser: streaming answers, tool steps, frames inline, video upload."""
    from sleuth.cli.api import announce_access, warn_about_folders
    from sleuth.datapaths import for_serving
    from sleuth.graphs.runtime import Runtime
    from sleuth.serve.access import Access
    from sleuth.serve.webchat import ChatSession, launch_ui

    runtimes: list[Runtime] = []

    def investigator() -> ChatSession:  # made on the first page load, closed on exit
        from sleuth.graphs.investigate import Investigator

        runtimes.append(Runtime.from_settings(for_serving(settings)))
        return Investigator(runtimes[-1], agent_model=model)

    access = Access.for_server(host)
    with request("ui") as settings:
        warn_about_folders(settings)
        demo = launch_ui(settings, host=host, port=port, investigator_factory=investigator, access=access)
    announce_access(access, host, "web chat", show_key=False)
    out.print(f"Sleuth web chat: {demo.sleuth_url}")
    err.print("[dim]Ctrl-C to stop[/]")
    try:
        demo.block_thread()  # returns on Ctrl-C
    finally:
        demo.close()
        for runtime in runtimes:
            runtime.close()
