"""Which files a request may touch: the configured data folders and the upload folder, nothing else.

The chat agent, the HTTP API and the web chat take video paths from people and from a model;
every such path goes through :func:`resolve_data_path`, which resolves symlinks and ``..`` first,
so no request can read outside ``settings.data_dirs`` and ``<data_dir>/uploads``. On the command
line, no configured data folder means the current folder; a server (the API, the web chat) never
falls back to the folder it was started from (:func:`for_serving`).
"""

from __future__ import annotations

from pathlib import Path

from sleuth.config import Settings
from sleuth.errors import SleuthError


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded videos are stored (inside the allowed roots by construction)."""
    return Path(settings.data_dir).expanduser() / "uploads"


def chat_dir(settings: Settings) -> Path:
    """Where the chat agent's tools write frames, plots and reports (one folder per thread)."""
    return Path(settings.data_dir).expanduser() / "chat"


def jobs_dir(settings: Settings) -> Path:
    """Where the HTTP API keeps its detect jobs (one folder per job)."""
    return Path(settings.data_dir).expanduser() / "jobs"


def within(path: str | Path, roots: list[Path]) -> Path | None:
    """``path`` resolved (symlinks and ``..`` first) when it lies under one of ``roots``, else None."""
    resolved = Path(path).expanduser().resolve()
    return resolved if any(resolved.is_relative_to(Path(root).resolve()) for root in roots) else None


def for_serving(settings: Settings) -> Settings:
    """``settings`` for a server: with no data folder configured, only the uploads folder is readable
    (not the folder the server was started from, which may hold keys and dotfiles)."""
    if settings.data_dirs:
        return settings
    return settings.model_copy(update={"data_dirs": [uploads_dir(settings)]})


def allowed_roots(settings: Settings) -> list[Path]:
    roots = [Path(root).expanduser() for root in settings.data_dirs] or [Path.cwd()]
    return list(dict.fromkeys(root.resolve() for root in (*roots, uploads_dir(settings))))


def resolve_data_path(settings: Settings, path: str | Path) -> Path:
    """``path`` (relative paths are taken from the current folder) resolved, if inside a data folder."""
    roots = allowed_roots(settings)
    resolved = within(path, roots)
    if resolved is None:
        raise SleuthError(f"{path} is outside the data folders",
                          hint="use a file under " + ", ".join(str(root) for root in roots)
                          + " (add folders with data_dirs in sleuth.toml or SLEUTH_DATA_DIRS)")
    return resolved
