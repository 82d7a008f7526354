"""Typed errors for expected failures.

Every error a user can cause or fix (bad config, endpoint down, model file missing or corrupt,
malformed model output) is a :class:`SleuthError`. Its ``str()`` is one line that says what
happened and what to do; the CLI prints exactly that line and exits non-zero. The exception it
was made from, if any, stays reachable as ``cause`` (``SLEUTH_DEBUG=1`` prints it), even where
the error is raised ``from None`` to keep the normal output to that one line.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def shorten(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut at a word boundary with "…" when it is longer than ``limit``."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not too far back; else one very long word is cut
        cut = cut[:space]
    return cut.rstrip(" ,;:-(") + "…"


class SleuthError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None,
                 cause: BaseException | None = None) -> None:
        self.message = message
        self.hint = hint
        self.cause = cause
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class ConfigError(SleuthError):
    """The configuration file or environment is invalid."""


class ModelFileError(SleuthError):
    """A packaged model part or GGUF file is missing, of the wrong version, or corrupt."""


class ChecksumError(ModelFileError):
    """A model file's SHA-256 does not match the pinned value."""


class PerceptionModelError(SleuthError):
    """A perception model (sleuth.tools.perception.models) is not installed, changed since it was
    installed, or could not be downloaded, checked or converted."""


class EndpointError(SleuthError):
    """An LLM/VLM endpoint could not be reached, refused the request or timed out."""


class EndpointUnreachable(EndpointError):
    """Nothing answered at the endpoint's address (connection refused, unknown host)."""


class EndpointTimeout(EndpointError):
    """The endpoint did not answer within the configured timeout."""


class EndpointBadResponse(EndpointError):
    """The endpoint was reached but its answer was unusable: not an OpenAI-compatible chat
    completion (malformed or unexpected body, a dropped connection) or a server error (HTTP 5xx)."""


class AuthenticationError(EndpointError):
    """The endpoint rejected the credentials."""


class StructuredOutputError(SleuthError):
    """The model's answer stayed invalid for the requested schema after the retry."""

    def __init__(self, message: str, *, raw: str, errors: str, hint: str | None = None) -> None:
        self.raw = raw
        self.errors = errors
        super().__init__(message, hint=hint)
