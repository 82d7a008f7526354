"""``sleuth chat``: talk to the investigate agent in the terminal.

Tokens stream as the model writes; tool steps, their progress and the files they wrote (frames,
contact sheets, score plots, reports) are printed as they happen; before a long job or a change
to stored state the agent asks, and the answer (y/n) resumes it. The thread id printed at the
start resumes the conversation later (``--thread``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def chat(
    message: Annotated[str | None, typer.Argument(help="Ask this and exit (default: an interactive session).")]
    = None,
    thread: Annotated[str | None, typer.Option(help="Resume this thread (its id is printed at the start).")] = None,
    model: Annotated[str | None, typer.Option(
        help="LLM (e.g. qwen2.5-coder-0.5b); default: llm.agent_model, the packaged 1.5B.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Approve every confirmation without asking.")] = False,
    no_confirm: Annotated[bool, typer.Option(help="Never pause for confirmations (scripts).")] = False,
) -> None:
    """Chat with the investigate agent: it runs detect, explain, search, calibrate and rule tools for you."""
    from sleuth.graphs.investigate import InvestigateConfig, Investigator
    from sleuth.graphs.runtime import Runtime

    with request("chat") as settings:
        runtime = Runtime.from_settings(settings)
        try:
            investigator = Investigator(runtime, InvestigateConfig(confirm=not no_confirm), agent_model=model)
            thread_id = thread or investigator.new_thread()
            err.print(f"[dim]thread {thread_id} (resume with --thread {thread_id}), model "
                      f"{investigator.agent_runtime.settings.llm.model}; Ctrl-D or 'exit' to quit[/]")
            pending = investigator.pending(thread_id)
            if pending is not None:
                _render(_confirm(investigator, pending, yes))
            interactive = message is None
            while True:
                text = message if message is not None else _read()
                message = None
                if text is None or text.strip().lower() in ("exit", "quit"):
                    break
                events = investigator.send(thread_id, text)
                while True:
                    pending = _render(events)
                    if pending is None:
                        break
                    events = _confirm(investigator, pending, yes)
                if not interactive:
                    break
        finally:
            runtime.close()


def _read() -> str | None:
    try:
        return input("you> ") if sys.stdin.isatty() else (sys.stdin.readline() or None)
    except EOFError:
        return None


def _render(events: Iterator[object]) -> object | None:
    """Print events; returns the interrupt event when the agent waits for a confirmation."""
    from sleuth.graphs.investigate import ChatEvent

    streamed = False
    for event in events:
        assert isinstance(event, ChatEvent)
        if event.type == "token":
            if not streamed:
                out.print("[bold]sleuth>[/] ", end="")
                streamed = True
            out.print(escape(event.text), end="")
        elif event.type == "tool_start":
            err.print(f"[cyan]  → {event.tool}({escape(json.dumps(event.args))})[/]")
        elif event.type == "progress" and event.progress:
            step = event.progress
            finished = step["done"] >= step["total"]
            if err.is_terminal:  # one line that updates in place
                err.print(f"[dim]    {step['stage']} {step['done']}/{step['total']}[/]", end="\n" if finished else "\r")
            elif finished:  # logs and pipes: a line per finished stage
                err.print(f"[dim]    {step['stage']} {step['done']}/{step['total']}[/]")
        elif event.type == "tool_end":
            first = (event.result or "").splitlines()[0][:160] if event.result else ""
            err.print(f"[cyan]  ← {event.tool}: {escape(first)}[/]")
            for path in event.files:
                err.print(f"[green]    wrote {escape(path)}[/]")
        elif event.type == "interrupt":
            if streamed:
                out.print()
            return event
        elif event.type == "error":
            if streamed:
                out.print()
            err.print(f"[bold red]error:[/] {escape(event.text)}")
        elif event.type == "answer":
            if not streamed and event.text:
                out.print(f"[bold]sleuth>[/] {escape(event.text)}", end="")
            out.print()
            if event.files:
                out.print("files: " + ", ".join(escape(path) for path in event.files))
    return None


def _confirm(investigator: object, pending: object, yes: bool) -> Iterator[object]:
    from sleuth.graphs.investigate import ChatEvent, Investigator

    assert isinstance(investigator, Investigator) and isinstance(pending, ChatEvent)
    if yes:
        err.print(f"[yellow]{escape(pending.text)} yes (--yes)[/]")
        approved = True
    elif sys.stdin.isatty():
        approved = typer.confirm(pending.text, default=False)
    else:
        line = sys.stdin.readline().strip().lower()
        approved = line in ("y", "yes")
        err.print(f"[yellow]{escape(pending.text)} {'yes' if approved else 'no'}[/]")
    return investigator.resume(pending.thread_id, approved)
