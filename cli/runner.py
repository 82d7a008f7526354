"""Run one CLI command as one traced request, turning expected failures into one line.

No traceback reaches a CLI user: a :class:`~sleuth.errors.SleuthError` prints its one-line
message and exits 2; anything unexpected prints a one-line summary and exits 3. With
``SLEUTH_DEBUG=1`` every error also shows, on stderr before that line, its traceback and what
caused it: the exception it was made from (``SleuthError.cause``, kept even where the error is
raised ``from None``) with that exception's own chain. Ctrl-C prints one line and exits 130:
"interrupted", or what :class:`Interrupted` says (e.g. that rerunning resumes, for commands that
checkpoint). The trace id of the request goes to stderr.
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
from sleuth.errors import SleuthError, shorten

R = TypeVar("R")
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in a command that can say more than "interrupted" (e.g. how to resume)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


RESUMES = "interrupted; rerun the same command to resume from the last checkpoint"


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
        _debug(exc)
        raise fail(_escape(exc.one_line()), exc.exit_code) from None
    except KeyboardInterrupt as exc:
        raise fail(_escape(exc.message) if isinstance(exc, Interrupted) else "interrupted", 130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _debug(exc)
        first = shorten((str(exc).splitlines() or [""])[0], 200)
        raise fail(f"unexpected {type(exc).__name__}: {_escape(first)} "
                   "(rerun with SLEUTH_DEBUG=1 for the traceback and report it)", 3) from None
    finally:
        telemetry.flush()


def run(name: str, function: Callable[[Settings], R]) -> R:
    with request(name) as settings:
        return function(settings)


def debugging() -> bool:
    """Whether ``SLEUTH_DEBUG`` is set to something other than empty, 0, false, no or off."""
    return os.environ.get("SLEUTH_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _debug(exc: BaseException) -> None:
    """With SLEUTH_DEBUG set: the error's traceback on stderr, then each cause's with its chain."""
    if not debugging():
        return
    traceback.print_exception(exc, file=sys.stderr)
    seen = {id(exc)}
    cause = _cause(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        print(f"\nCaused by {type(cause).__module__}.{type(cause).__qualname__}:", file=sys.stderr)
        traceback.print_exception(cause, file=sys.stderr)  # with its own __cause__/__context__ chain
        cause = _cause(cause) if isinstance(cause, SleuthError) else None
    sys.stderr.flush()


def _cause(exc: BaseException) -> BaseException | None:
    """What ``exc`` came from: ``SleuthError.cause``, else ``__cause__`` or ``__context__``, shown
    in debug even where ``raise ... from None`` hides it from the plain traceback."""
    return getattr(exc, "cause", None) or exc.__cause__ or exc.__context__


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
