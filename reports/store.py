"""Reports on disk: the detect report as JSON (atomic writes) and loading it back with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError
from sleuth.errors import SleuthError
from sleuth.records import DetectReport
from sleuth.reports.files import atomic_write_text
from sleuth.reports.html import write_html

_HINT = "pass the JSON file that `sleuth detect` wrote"


def write_json(report: DetectReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented JSON (thumbnails included), atomically; parent folders are created."""
    return atomic_write_text(path, report.model_dump_json(indent=1))


def load_report(path: str | os.PathLike[str]) -> DetectReport:
    """Read a detect report written by :func:`write_json`; any problem is a one-line :class:`SleuthError`."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a report file" if path.is_dir() else "not found"
        raise SleuthError(f"report {path} {what}", hint=_HINT)
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise SleuthError(f"cannot read report {path} ({exc.strerror or exc})", hint="check its permissions") from None
    except json.JSONDecodeError as exc:
        raise SleuthError(f"report {path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})",
                          hint=f"the file may be truncated or not a report; {_HINT}") from None
    except UnicodeDecodeError:
        raise SleuthError(f"report {path} is not valid JSON (not UTF-8 text)", hint=_HINT) from None
    try:
        return DetectReport.model_validate(data)
    except ValidationError as exc:
        raise SleuthError(f"{path} is not a detect report ({_first_problem(exc)})", hint=_HINT) from None


def write_report(report: DetectReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as HTML (``.html``/``.htm``) or JSON (``.json``), chosen by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return write_html(report, path)
    if suffix == ".json":
        return write_json(report, path)
    raise SleuthError(f"cannot write a report to {path}: unknown suffix '{path.suffix}'",
                      hint="name the file .html (a page to read) or .json (data to reload)")


def _first_problem(error: ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    more = f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"
