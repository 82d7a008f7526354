"""Run one CLI command as one traced request, turning expected failures into one line.

No traceback reaches a CLI user: a :class:`~sleuth.errors.SleuthError` prints its one-line
message and exits 2; anything unexpected prints a one-line summary (``SLEUTH_DEBUG=1`` shows the
traceback) and exits 3. The trace id of the request goes to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from sleuth import telemetry
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError

R = TypeVar("R")
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


@contextmanager
def request(name: str) -> Iterator[Settings]:
    """Load settings, set up tracing, open the request's root span; map errors to one line."""
    try:
        settings = load_settings()
        telemetry.configure(settings.tracing)
        with telemetry.request_span(f"sleuth {name}") as span:
            try:
                yield settings
            finally:
                trace_id = format(span.get_span_context().trace_id, "032x")
                err.print(f"[dim]trace {trace_id}[/]")
    except SleuthError as exc:
        raise fail(_escape(exc.one_line()), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("SLEUTH_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        first = (str(exc).splitlines() or [""])[0][:200]
        raise fail(f"unexpected {type(exc).__name__}: {_escape(first)} "
                   "(rerun with SLEUTH_DEBUG=1 for the traceback and report it)", 3) from None
    finally:
        telemetry.flush()


def run(name: str, function: Callable[[Settings], R]) -> R:
    with request(name) as settings:
        return function(settings)


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
