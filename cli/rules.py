"""``sleuth rules``: list, show, diff, edit, roll back, import, export and induce scene rules.

The rules live in the versioned rule memory (:mod:`sleuth.memory.rules`); every change is a new
version, so nothing here destroys an older rule set.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sleuth.agents.schemas import RuleSet, Source
from sleuth.cli.runner import err, fail, request
from sleuth.config import Settings

if TYPE_CHECKING:
    from sleuth.memory.rules import RuleMemory, VersionInfo

rules_app = typer.Typer(help="Scene rules: versioned, editable, induced from captions.",
                        no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)

Format = Literal["md", "json"]
SceneOption = Annotated[str, typer.Option("--scene", "-s", help="Scene (camera) name.")]
VersionOption = Annotated[int | None, typer.Option("--version", "-v", help="Version (default: latest).")]

# Shown in the editor when a scene has no rules yet.
TEMPLATE = """**Anomaly Human Activities:**
1. 

**Anomaly Non-Human Objects:**
1. 

**Rules for Normal Human Activities:**
1. 

**Rules for Normal Non-Human Objects:**
1. 
"""


def _memory(settings: Settings) -> RuleMemory:
    from sleuth.memory.rules import RuleMemory

    return RuleMemory(settings)


def _summary(ruleset: RuleSet) -> str:
    return f"{len(ruleset.anomaly)} anomaly, {len(ruleset.normal)} normal rules"


def parse_rules(text: str, *, scene: str, source: Source, origin: str, fmt: Format | None = None) -> RuleSet:
    """Rules from Markdown (rules.txt layout) or JSON (a RuleSet); at least one anomaly rule."""
    as_json = fmt == "json" or (fmt is None and text.lstrip().startswith("{"))
    try:
        if as_json:
            ruleset = RuleSet.model_validate_json(text).model_copy(
                update={"scene": scene, "source": source, "version": 0})
        else:
            ruleset = RuleSet.parse(text, scene=scene, source=source)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "rules"
        kind = "rules JSON" if as_json else "rules file"
        raise fail(escape(f"{origin} is not a valid {kind}: {where}: {first['msg']}")) from None
    if not ruleset.rules:
        raise fail(escape(f"{origin} has no rules: expected the rules.txt layout, headings such as "
                          "'**Anomaly Human Activities:**' each followed by numbered rules, or a JSON rule set"))
    if not ruleset.anomaly:
        raise fail(escape(f"{origin} has no anomaly rules (only {len(ruleset.normal)} normal): add an "
                          "'Anomaly Human Activities:' or 'Anomaly Non-Human Objects:' heading with numbered "
                          "rules"))
    return ruleset


def _read(path: Path) -> str:
    if not path.is_file():
        raise fail(escape(f"{path} does not exist or is not a file"))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(escape(f"cannot read {path}: {exc}")) from None


def _saved(scene: str, before: int, version: int, ruleset: RuleSet) -> None:
    if version == before:
        out.print(f"scene {escape(scene)}: unchanged, still v{version} ({_summary(ruleset)})")
    else:
        out.print(f"scene {escape(scene)}: saved v{version} ({_summary(ruleset)})")


@rules_app.command("list")
def list_rules(
    scene: Annotated[str | None, typer.Option("--scene", "-s", help="Only this scene.")] = None,
) -> None:
    """List the scenes and their rule versions."""
    with request("rules list") as settings, _memory(settings) as memory:
        scenes = [scene] if scene else memory.scenes()
        rows: list[tuple[str, VersionInfo, bool]] = []
        for name in scenes:
            infos = memory.versions(name)
            if not infos:
                raise memory.not_found(name)
            rows.extend((name, info, info is infos[-1]) for info in infos)
    if not rows:
        err.print("no rules stored yet: add some with `sleuth rules import FILE --scene S` "
                  "or `sleuth rules induce --scene S --captions FILE`")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("scene", "version", "source", "created (UTC)", "anomaly", "normal"):
        table.add_column(column, no_wrap=True)
    table.add_column("note", overflow="fold")
    for name, info, is_latest in rows:
        table.add_row(escape(name), f"v{info.version}" + (" (latest)" if is_latest else ""), info.source,
                      _when(info.created), str(info.n_anomaly), str(info.n_normal), escape(info.note))
    wide = out if out.is_terminal else Console(highlight=False, width=240)  # piped: one row per line
    wide.print(table)


def _when(created: str) -> str:
    """'2025-01-31T12:34:56+00:00' -> '2025-01-31 12:34'."""
    return created[:16].replace("T", " ")


def _get(memory: RuleMemory, scene: str, version: int | None) -> RuleSet:
    if version is not None:
        return memory.get(scene, version)
    latest = memory.latest(scene)
    if latest is None:
        raise memory.not_found(scene)
    return latest


@rules_app.command()
def show(
    scene: SceneOption,
    version: VersionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rule set as JSON.")] = False,
) -> None:
    """Print one version of a scene's rules (Markdown in the rules.txt layout, or JSON)."""
    with request("rules show") as settings, _memory(settings) as memory:
        ruleset = _get(memory, scene, version)
    err.print(f"[dim]scene {escape(scene)} · v{ruleset.version} · {ruleset.source} · {_summary(ruleset)}[/]")
    sys.stdout.write(ruleset.model_dump_json(indent=2) + "\n" if as_json else ruleset.render())
    sys.stdout.flush()


@rules_app.command()
def diff(
    scene: SceneOption,
    a: Annotated[int, typer.Argument(help="The older version.")],
    b: Annotated[int, typer.Argument(help="The newer version.")],
) -> None:
    """Show the rules removed (-) and added (+) from version A to version B."""
    with request("rules diff") as settings, _memory(settings) as memory:
        change = memory.diff(scene, a, b)
    for line in change.lines():
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    err.print(f"[dim]v{a} → v{b}: {len(change.added)} added, {len(change.removed)} removed, "
              f"{change.unchanged} unchanged[/]")


def _run_editor(path: Path) -> None:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    command = shlex.split(editor) + [str(path)]
    try:
        code = subprocess.run(command, check=False).returncode
    except OSError as exc:
        raise fail(escape(f"cannot start the editor '{editor}' ({exc.strerror}): set $VISUAL or $EDITOR, "
                          "or edit a file yourself and pass it with --file")) from None
    if code != 0:
        raise fail(escape(f"the editor '{editor}' exited with code {code}: nothing saved "
                          f"(your text is in {path})"))


@rules_app.command()
def edit(
    scene: SceneOption,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Take this already-edited rules file instead of opening an editor.")] = None,
) -> None:
    """Edit a scene's latest rules in $VISUAL/$EDITOR; a changed file is saved as a new version."""
    with request("rules edit") as settings:
        with _memory(settings) as memory:  # not held open while the editor runs
            current = memory.latest(scene)
        if file is not None:
            text, origin = _read(file), str(file)
        else:
            handle, name = tempfile.mkstemp(prefix=f"sleuth-rules-{_safe(scene)}-", suffix=".md")
            path = Path(name)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(current.render() if current else TEMPLATE)
            _run_editor(path)
            text, origin = path.read_text(encoding="utf-8"), f"the edited rules (kept in {path})"
        ruleset = parse_rules(text, scene=scene, source="user", origin=origin, fmt=None if file else "md")
        with _memory(settings) as memory:
            before = memory.latest_version(scene)
            version = memory.save(ruleset, source="user", note="edited")
        if file is None:
            path.unlink(missing_ok=True)
    _saved(scene, before, version, ruleset)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]


@rules_app.command()
def rollback(
    scene: SceneOption,
    version: Annotated[int, typer.Option("--version", "-v", help="The version to restore.")],
) -> None:
    """Restore an older version of a scene's rules as a new version (history is kept)."""
    with request("rules rollback") as settings, _memory(settings) as memory:
        before = memory.latest_version(scene)
        new = memory.rollback(scene, version)
        ruleset = memory.get(scene, new)
    if new == before:
        out.print(f"scene {escape(scene)}: v{before} already has the rules of v{version}; nothing to do")
    else:
        out.print(f"scene {escape(scene)}: v{new} restores v{version} ({_summary(ruleset)})")


@rules_app.command()
def export(
    scene: SceneOption,
    version: VersionOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="md (rules.txt layout) or json; default: from the file suffix, else md.")] = None,
) -> None:
    """Write one version of a scene's rules as Markdown (rules.txt layout) or JSON."""
    chosen = _format(fmt, output)
    with request("rules export") as settings, _memory(settings) as memory:
        ruleset = _get(memory, scene, version)
    text = ruleset.model_dump_json(indent=2) + "\n" if chosen == "json" else ruleset.render()
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(escape(f"cannot write {output}: {exc.strerror}")) from None
    err.print(f"wrote {escape(str(output))} (scene {escape(scene)} v{ruleset.version}, {_summary(ruleset)})")


def _format(fmt: str | None, path: Path | None) -> Format:
    if fmt is None:
        return "json" if path is not None and path.suffix.lower() == ".json" else "md"
    if fmt not in ("md", "json"):
        raise fail(escape(f"--format must be md or json, not '{fmt}'"))
    return "json" if fmt == "json" else "md"


@rules_app.command("import")
def import_rules(
    file: Annotated[Path, typer.Argument(help="A rules file: Markdown in the rules.txt layout, or JSON.")],
    scene: SceneOption,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="md or json; default: from the suffix or the content.")] = None,
    note: Annotated[str | None, typer.Option(help="A note stored with the version.")] = None,
) -> None:
    """Store a rules file as the next version of a scene (nothing new if the rules are the same)."""
    chosen: Format | None = _format(fmt, file) if fmt else ("json" if file.suffix.lower() == ".json" else None)
    text = _read(file)
    with request("rules import") as settings:
        ruleset = parse_rules(text, scene=scene, source="file", origin=str(file), fmt=chosen)
        with _memory(settings) as memory:
            before = memory.latest_version(scene)
            version = memory.save(ruleset, source="file", note=note or f"imported from {file.name}")
    _saved(scene, before, version, ruleset)


@rules_app.command()
def induce(
    scene: SceneOption,
    captions: Annotated[list[Path], typer.Option(
        "--captions", "-c", help="A caption file (one caption per line, one file per video); repeatable.")],
    sample: Annotated[int, typer.Option(min=1, help="Captions sampled per video.")] = 20,
) -> None:
    """Induce rules from the captions of unlabeled videos (HyCoVAD) and save them as a new version."""
    by_video: dict[str, list[str]] = {}
    for path in captions:
        lines = [line.strip() for line in _read(path).splitlines() if line.strip()]
        if not lines:
            raise fail(escape(f"{path} has no captions (expected one caption per line)"))
        if path.stem in by_video:
            raise fail(escape(f"two caption files are named '{path.stem}': each video needs its own file name"))
        by_video[path.stem] = lines
    with request("rules induce") as settings, _memory(settings) as memory:  # fail fast if the store is unusable
        from sleuth.agents.rules import induce_from_unlabeled

        ruleset = induce_from_unlabeled(by_video, per_video=sample, scene=scene)
        ruleset = ruleset.model_copy(update={"scene": scene})
        if not ruleset.anomaly:
            raise fail(escape(f"induction from {len(by_video)} video(s) gave no anomaly rules: nothing saved "
                              "(try more captions or a larger --sample)"))
        before = memory.latest_version(scene)
        version = memory.save(ruleset, source="induced",
                              note=f"induced from {len(by_video)} video(s), {sample} captions each")
    _saved(scene, before, version, ruleset)

