"""Prompts as data: every TOML prompt loads by id, is versioned and fills its fields."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from sleuth.errors import SleuthError
from sleuth.prompts import PROMPT_DIR, Prompt, all_prompts, load_prompt

PROMPT_FILES = sorted(Path(PROMPT_DIR).glob("*.toml"))
IDS = [path.stem for path in PROMPT_FILES]


def test_the_code_s_prompts_are_there() -> None:
    assert {"deduction.evidence", "deduction.frame", "rules.induction"} <= set(IDS)
    assert [prompt.id for prompt in all_prompts()] == IDS


@pytest.mark.parametrize("path", PROMPT_FILES, ids=IDS)
def test_prompt_file_declares_its_own_id_and_an_integer_version(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    assert data["id"] == path.stem
    assert isinstance(data["version"], int) and data["version"] >= 1
    assert data["user"].strip()


@pytest.mark.parametrize("prompt_id", IDS)
def test_prompt_loads_by_id(prompt_id: str) -> None:
    prompt = load_prompt(prompt_id)
    assert isinstance(prompt, Prompt)
    assert prompt.id == prompt_id
    assert isinstance(prompt.version, int)
    assert prompt.ref == f"{prompt_id}@{prompt.version}"
    assert prompt.fields(), "a prompt without fields cannot carry its input"


@pytest.mark.parametrize("prompt_id", IDS)
def test_messages_fill_every_field(prompt_id: str) -> None:
    prompt = load_prompt(prompt_id)
    values = {name: f"<<{name.upper()}>>" for name in prompt.fields()}
    messages = prompt.messages(**values)
    assert messages[-1]["role"] == "user"
    assert [m["role"] for m in messages] == (["system", "user"] if prompt.system else ["user"])
    content = "\n".join(m["content"] for m in messages)
    for value in values.values():
        assert value in content
    assert not re.search(r"\{\w+\}", content), "a field was left unfilled"


@pytest.mark.parametrize("prompt_id", IDS)
def test_missing_field_raises_value_error_naming_it(prompt_id: str) -> None:
    prompt = load_prompt(prompt_id)
    fields = sorted(prompt.fields())
    missing = fields[0]
    values = {name: "x" for name in fields[1:]}
    with pytest.raises(ValueError, match=re.escape(missing)) as caught:
        prompt.messages(**values)
    assert prompt.ref in str(caught.value)


def test_known_fields() -> None:
    assert load_prompt("deduction.evidence").fields() == {"options", "observation"}
    assert load_prompt("rules.induction").fields() == {"captions", "max_rules"}
    assert {"caption", "anomaly_rules", "normal_rules"} <= load_prompt("deduction.frame").fields()


def test_unknown_prompt_is_a_one_line_sleuth_error() -> None:
    with pytest.raises(SleuthError) as caught:
        load_prompt("no.such.prompt")
    message = str(caught.value)
    assert "\n" not in message
    assert "no.such.prompt" in message
    assert "deduction.evidence" in message  # the hint lists the known prompts


def test_every_prompt_version_is_recorded_with_its_text() -> None:
    """Changing a prompt's text without raising its version fails here (evals pin versions)."""
    from sleuth.prompts import lock_problems

    assert lock_problems() == []


def test_a_changed_text_without_a_version_bump_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    import sleuth.prompts as prompts

    for path in prompts.PROMPT_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(prompts.LOCK_FILE, tmp_path / prompts.LOCK_FILE.name)
    monkeypatch.setattr(prompts, "PROMPT_DIR", tmp_path)
    monkeypatch.setattr(prompts, "LOCK_FILE", tmp_path / prompts.LOCK_FILE.name)
    prompts.load_prompt.cache_clear()
    try:
        edited = tmp_path / "rules.induction.toml"
        edited.write_text(edited.read_text().replace("surveillance analyst", "security analyst"))
        prompts.load_prompt.cache_clear()
        assert prompts.lock_problems() == ["rules.induction@1 changed without a version bump: raise `version` in "
                                           "prompts/rules.induction.toml, then run `python -m sleuth.prompts lock`"]
        with pytest.raises(SleuthError, match="recorded with other text"):
            prompts.update_lock()
        edited.write_text(edited.read_text().replace("version = 1", "version = 2"))
        prompts.load_prompt.cache_clear()
        assert prompts.lock_problems() == ["rules.induction@2 is not recorded: run `python -m sleuth.prompts lock`"]
        assert prompts.update_lock() == ["rules.induction@2"]
        assert prompts.lock_problems() == []
        assert set(prompts.read_lock()["rules.induction"]) == {"1", "2"}  # old versions stay pinned
    finally:
        prompts.load_prompt.cache_clear()
