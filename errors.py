"""Typed errors for expected failures.

Every error a user can cause or fix (bad config, endpoint down, model file missing or corrupt,
malformed model output) is a :class:`SleuthError`. Its ``str()`` is one line that says what
happened and what to do; the CLI prints exactly that line and exits non-zero.
"""

from __future__ import annotations


class SleuthError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class ConfigError(SleuthError):
    """The configuration file or environment is invalid."""


class ModelFileError(SleuthError):
    """A packaged model part or GGUF file is missing, of the wrong version, or corrupt."""


class ChecksumError(ModelFileError):
    """A model file's SHA-256 does not match the pinned value."""


class EndpointError(SleuthError):
    """An LLM/VLM endpoint could not be reached, refused the request or timed out."""


class EndpointTimeout(EndpointError):
    """The endpoint did not answer within the configured timeout."""


class AuthenticationError(EndpointError):
    """The endpoint rejected the credentials."""


class StructuredOutputError(SleuthError):
    """The model's answer stayed invalid for the requested schema after the retry."""

    def __init__(self, message: str, *, raw: str, errors: str, hint: str | None = None) -> None:
        self.raw = raw
        self.errors = errors
        super().__init__(message, hint=hint)
