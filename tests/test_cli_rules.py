"""``sleuth rules``: what a user sees, and one error line (never a traceback) when things fail.

Most commands run in-process through typer's CliRunner with a small deterministic embedder; the
subprocess tests run the installed ``sleuth`` binary (the slow one with the real MiniLM embedder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sleuth.agents.schemas import RuleSet
from sleuth.cli.main import app
from sleuth.config import load_settings
from sleuth.memory.rules import RuleMemory
from sleuth.tools.embedder import TextEmbedder
from typer.testing import CliRunner, Result

from tests.conftest import HashEmbedder, closed_port_url

PED2_RULES = Path("/work/shared/data/anomalyruler/ped2/rules.txt")
SLEUTH = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"


@pytest.fixture(autouse=True)
def fast_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands embed with HashEmbedder instead of loading MiniLM."""
    monkeypatch.setattr("sleuth.tools.embedder.TextEmbedder", lambda config=None: HashEmbedder())


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["rules", *args], catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result: Result | subprocess.CompletedProcess[str], *fragments: str,
                          code: int = 2) -> str:
    exit_code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert exit_code == code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def stored(scene: str) -> list[tuple[int, str, str]]:
    with RuleMemory(load_settings(), HashEmbedder()) as memory:
        return [(info.version, info.source, info.note) for info in memory.versions(scene)]


def test_import_export_round_trip_of_the_ped2_rules(tmp_path: Path) -> None:
    original = RuleSet.parse(PED2_RULES.read_text())
    result = ok(cli("import", str(PED2_RULES), "--scene", "ped2"))
    assert "saved v1 (26 anomaly, 19 normal rules)" in result.stdout
    assert "unchanged, still v1" in ok(cli("import", str(PED2_RULES), "--scene", "ped2")).stdout
    assert stored("ped2") == [(1, "file", "imported from rules.txt")]

    markdown = ok(cli("export", "--scene", "ped2")).stdout
    assert markdown.startswith("**Anomaly Human Activities:**\n1. Running or jumping\n")
    assert RuleSet.parse(markdown).rules == original.rules

    as_json = tmp_path / "ped2.json"
    ok(cli("export", "--scene", "ped2", "--version", "1", "--output", str(as_json)))
    exported = RuleSet.model_validate_json(as_json.read_text())
    assert exported.rules == original.rules and exported.version == 1
    assert "saved v1" in ok(cli("import", str(as_json), "--scene", "copy")).stdout
    forced_md = tmp_path / "ped2.txt"
    ok(cli("export", "--scene", "copy", "--format", "md", "-o", str(forced_md)))
    assert RuleSet.parse(forced_md.read_text()).rules == original.rules


def test_list_and_show(tmp_path: Path) -> None:
    result = ok(cli("list"))
    assert result.stdout == "" and "no rules stored yet" in result.stderr
    ok(cli("import", str(PED2_RULES), "--scene", "ped2"))
    edited = tmp_path / "edited.md"
    edited.write_text(PED2_RULES.read_text().replace("1. Running or jumping\n", ""))
    ok(cli("edit", "--scene", "ped2", "--file", str(edited)))
    ok(cli("import", str(PED2_RULES), "--scene", "avenue"))

    table = ok(cli("list")).stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [(row[0], row[1]) for row in rows] == [("avenue", "v1"), ("ped2", "v1"), ("ped2", "v2")]
    assert "(latest)" in table.splitlines()[3] and "(latest)" not in table.splitlines()[2]
    assert "user" in table.splitlines()[3] and "25" in table.splitlines()[3]
    only = ok(cli("list", "--scene", "avenue")).stdout
    assert "avenue" in only and "ped2" not in only

    shown = ok(cli("show", "--scene", "ped2"))
    assert "Running or jumping" not in shown.stdout and "v2" in shown.stderr
    assert "Running or jumping" in ok(cli("show", "--scene", "ped2", "--version", "1")).stdout
    data = json.loads(ok(cli("show", "--scene", "ped2", "--json")).stdout)
    assert data["version"] == 2 and data["source"] == "user" and len(data["rules"]) == 44

    assert_one_line_error(cli("show", "--scene", "ped2", "--version", "9"), "'ped2'", "v1, v2")
    assert_one_line_error(cli("show", "--scene", "cam3"), "'cam3'", "avenue, ped2")
    assert_one_line_error(cli("list", "--scene", "cam3"), "no rules stored for scene 'cam3'")


def test_edit_with_a_file_then_diff_and_rollback(tmp_path: Path) -> None:
    ok(cli("import", str(PED2_RULES), "--scene", "ped2"))
    text = ok(cli("export", "--scene", "ped2")).stdout
    edited = tmp_path / "edited.md"
    edited.write_text(text.replace("2. Using any non-walking movement such as riding a bicycle or scooter, "
                                   "skateboarding", "2. Riding a bicycle or a scooter"))
    assert "saved v2" in ok(cli("edit", "--scene", "ped2", "--file", str(edited))).stdout
    assert "unchanged, still v2" in ok(cli("edit", "--scene", "ped2", "--file", str(edited))).stdout

    change = ok(cli("diff", "--scene", "ped2", "1", "2"))
    assert change.stdout.splitlines() == [
        "- anomaly/human_activity: Using any non-walking movement such as riding a bicycle or scooter, "
        "skateboarding",
        "+ anomaly/human_activity: Riding a bicycle or a scooter"]
    assert "1 added, 1 removed, 44 unchanged" in change.stderr

    assert "v3 restores v1" in ok(cli("rollback", "--scene", "ped2", "--version", "1")).stdout
    assert ok(cli("diff", "--scene", "ped2", "1", "3")).stdout == ""
    assert "nothing to do" in ok(cli("rollback", "--scene", "ped2", "--version", "1")).stdout
    assert [(v, s) for v, s, _ in stored("ped2")] == [(1, "file"), (2, "user"), (3, "file")]
    assert stored("ped2")[-1][2] == "rollback to v1"
    assert_one_line_error(cli("rollback", "--scene", "ped2", "--version", "7"), "no version 7")
    assert_one_line_error(cli("diff", "--scene", "ped2", "1", "8"), "no version 8")


def _editor_script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text("import sys\npath = sys.argv[1]\n" + body)
    return f"{sys.executable} {script}"


def test_edit_opens_the_editor_and_saves_changes_as_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(cli("import", str(PED2_RULES), "--scene", "ped2"))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", _editor_script(tmp_path, (
        "text = open(path).read()\n"
        "assert text.startswith('**Anomaly Human Activities:**')\n"
        "open(path, 'w').write(text.replace('Running or jumping', 'Running, jumping or skipping'))\n")))
    assert "saved v2" in ok(cli("edit", "--scene", "ped2")).stdout
    assert stored("ped2")[-1][:2] == (2, "user")
    assert "Running, jumping or skipping" in ok(cli("show", "--scene", "ped2")).stdout

    # $VISUAL wins over $EDITOR; an editor that changes nothing makes no version
    monkeypatch.setenv("VISUAL", _editor_script(tmp_path, "pass\n"))
    assert "unchanged, still v2" in ok(cli("edit", "--scene", "ped2")).stdout


def test_edit_failures_save_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(cli("import", str(PED2_RULES), "--scene", "ped2"))
    monkeypatch.setenv("VISUAL", _editor_script(tmp_path, "sys.exit(3)\n"))
    assert_one_line_error(cli("edit", "--scene", "ped2"), "exited with code 3", "nothing saved")
    monkeypatch.setenv("VISUAL", "/no/such/editor")
    assert_one_line_error(cli("edit", "--scene", "ped2"), "cannot start the editor", "--file")
    monkeypatch.setenv("VISUAL", _editor_script(tmp_path, "open(path, 'w').write('just prose')\n"))
    line = assert_one_line_error(cli("edit", "--scene", "ped2"), "has no rules")
    kept = Path(line.split("kept in ")[1].split(")")[0])
    assert kept.read_text() == "just prose"  # the user's text survives a failed parse
    assert [v for v, _, _ in stored("ped2")] == [1]


def test_edit_of_a_new_scene_starts_from_a_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISUAL", _editor_script(tmp_path, (
        "text = open(path).read()\n"
        "assert 'Anomaly Human Activities' in text and 'Normal Non-Human Objects' in text\n"
        "open(path, 'w').write(text.replace('1. \\n', '1. Climbing the fence\\n', 1))\n")))
    assert "saved v1 (1 anomaly, 0 normal rules)" in ok(cli("edit", "--scene", "new")).stdout


def test_import_refuses_files_without_anomaly_rules(tmp_path: Path) -> None:
    normal_only = tmp_path / "normal.md"
    normal_only.write_text("**Rules for Normal Human Activities:**\n1. Walking\n2. Sitting on a bench\n")
    assert_one_line_error(cli("import", str(normal_only), "--scene", "s"), "no anomaly rules", "only 2 normal")
    prose = tmp_path / "prose.md"
    prose.write_text("People walk here.\n")
    assert_one_line_error(cli("import", str(prose), "--scene", "s"), "has no rules", "rules.txt layout")
    broken = tmp_path / "broken.json"
    broken.write_text('{"rules": [{"text": "x", "kind": "weird"}]}')
    assert_one_line_error(cli("import", str(broken), "--scene", "s"), "not a valid rules JSON")
    assert_one_line_error(cli("import", str(tmp_path / "missing.md"), "--scene", "s"), "does not exist")
    assert_one_line_error(cli("export", "--scene", "s", "--format", "xml"), "--format must be md or json")
    assert ok(cli("list")).stdout == ""


def test_induce_reads_caption_files_and_saves_an_induced_version(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_induce(captions_by_video: dict[str, list[str]], **kwargs: Any) -> RuleSet:
        calls.append({"captions": captions_by_video, **kwargs})
        return RuleSet.parse("**Anomaly Human Activities:**\n1. Riding a bicycle\n"
                             "**Normal Human Activities:**\n1. Walking\n", scene="whatever")

    monkeypatch.setattr("sleuth.agents.rules.induce_from_unlabeled", fake_induce)
    first, second = tmp_path / "video01.txt", tmp_path / "video02.txt"
    first.write_text("a man walks\n\na woman walks\n")
    second.write_text("a cyclist passes\n")
    result = ok(cli("induce", "--scene", "ped2", "--captions", str(first), "--captions", str(second),
                    "--sample", "5"))
    assert "saved v1 (1 anomaly, 1 normal rules)" in result.stdout
    assert calls == [{"captions": {"video01": ["a man walks", "a woman walks"], "video02": ["a cyclist passes"]},
                      "per_video": 5, "scene": "ped2"}]
    assert stored("ped2") == [(1, "induced", "induced from 2 video(s), 5 captions each")]
    assert "unchanged, still v1" in ok(cli("induce", "--scene", "ped2", "-c", str(first))).stdout

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert_one_line_error(cli("induce", "--scene", "ped2", "-c", str(empty)), "no captions")
    other = tmp_path / "sub"
    other.mkdir()
    (other / "video01.txt").write_text("x\n")
    assert_one_line_error(cli("induce", "--scene", "ped2", "-c", str(first), "-c", str(other / "video01.txt")),
                          "two caption files")


def test_induce_without_anomaly_rules_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sleuth.agents.rules.induce_from_unlabeled",
                        lambda captions, **kwargs: RuleSet.parse("**Normal Human Activities:**\n1. Walking\n"))
    captions = tmp_path / "v.txt"
    captions.write_text("a man walks\n")
    assert_one_line_error(cli("induce", "--scene", "s", "-c", str(captions)), "no anomaly rules", "nothing saved")
    assert stored("s") == []


def sleuth(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SLEUTH, "rules", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def test_unreachable_qdrant_url_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url().removesuffix("/v1")
    monkeypatch.setenv("QDRANT_URL", url)
    start = time.monotonic()
    result = sleuth("list")
    assert time.monotonic() - start < 20
    assert_one_line_error(result, f"cannot reach Qdrant at {url}", "unset QDRANT_URL")


def test_the_cli_works_beside_a_long_lived_store_of_another_process() -> None:
    """Issue 18: a running API held the folder for its whole life and `sleuth rules` failed."""
    with RuleMemory(load_settings(), HashEmbedder()) as holder:
        holder.save(RuleSet(scene="ped2", rules=RuleSet.parse("Anomaly rules:\n1. Riding a bicycle\n").rules))
        result = sleuth("list")
    assert result.returncode == 0, result.stderr
    assert "ped2" in result.stdout


@pytest.mark.slow
def test_import_show_export_with_the_installed_cli_and_real_embedder(tmp_path: Path) -> None:
    result = sleuth("import", str(PED2_RULES), "--scene", "ped2")
    assert result.returncode == 0, result.stderr
    assert "saved v1 (26 anomaly, 19 normal rules)" in result.stdout
    assert "Traceback" not in result.stderr
    exported = tmp_path / "ped2.json"
    assert sleuth("export", "--scene", "ped2", "-o", str(exported)).returncode == 0
    assert RuleSet.model_validate_json(exported.read_text()).rules == RuleSet.parse(PED2_RULES.read_text()).rules
    settings = load_settings()  # stored with MiniLM vectors: semantic search works
    with RuleMemory(settings, TextEmbedder(settings.embedder)) as memory:
        hit = memory.relevant("ped2", "a person rides a bike on the walkway", k=1, kind="anomaly")[0]
    assert "bicycle" in hit.text.lower()
    assert_one_line_error(sleuth("show", "--scene", "ped2", "--version", "4"), "no version 4")
