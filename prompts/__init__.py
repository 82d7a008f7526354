"""Prompts as data: one TOML file per prompt, with an id, a version and its expected output.

    id = "deduction.evidence"
    version = 1
    output = "letter"            # what the caller parses: a schema name, "letter", "text"
    description = "..."
    system = '''...'''
    user = '''... {observation} ...'''

Code loads prompts by id (``load_prompt("deduction.evidence")``); ``{name}`` fields are
filled by :meth:`Prompt.messages`. The id and version go on every result that used the prompt,
so evaluations can pin them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleuth.errors import ConfigError

PROMPT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    output: str
    description: str
    system: str
    user: str

    @property
    def fingerprint(self) -> str:
        """SHA-256 of what the model sees and what the caller parses (system, user, output)."""
        text = "\0".join((self.output, self.system, self.user))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def ref(self) -> str:
        """``id@version``, recorded with results."""
        return f"{self.id}@{self.version}"

    def fields(self) -> set[str]:
        names = set()
        for template in (self.system, self.user):
            names |= {name for _, name, _, _ in string.Formatter().parse(template) if name}
        return names

    def messages(self, **values: Any) -> list[dict[str, str]]:
        missing = self.fields() - values.keys()
        if missing:
            raise ValueError(f"prompt {self.ref} needs {', '.join(sorted(missing))}")
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system.format(**values).strip()})
        messages.append({"role": "user", "content": self.user.format(**values).strip()})
        return messages


@functools.cache
def load_prompt(prompt_id: str) -> Prompt:
    path = PROMPT_DIR / f"{prompt_id}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPT_DIR.glob("*.toml")))
        raise ConfigError(f"no prompt '{prompt_id}' in {PROMPT_DIR}", hint=f"known prompts: {known}")
    data = tomllib.loads(path.read_text())
    if data.get("id") != prompt_id:
        raise ConfigError(f"{path} declares id '{data.get('id')}'", hint=f"set id = \"{prompt_id}\"")
    return Prompt(id=prompt_id, version=int(data["version"]), output=data.get("output", "text"),
                  description=data.get("description", ""), system=data.get("system", ""),
                  user=data["user"])


def all_prompts() -> list[Prompt]:
    return [load_prompt(path.stem) for path in sorted(PROMPT_DIR.glob("*.toml"))]


LOCK_FILE = PROMPT_DIR / "versions.lock.json"


def read_lock() -> dict[str, dict[str, str]]:
    """Recorded fingerprints: prompt id -> version -> SHA-256 of that version's text."""
    return json.loads(LOCK_FILE.read_text()) if LOCK_FILE.is_file() else {}


def lock_problems() -> list[str]:
    """Prompts whose text changed without a version bump, or whose version is not recorded."""
    lock = read_lock()
    problems = []
    for prompt in all_prompts():
        recorded = lock.get(prompt.id, {}).get(str(prompt.version))
        if recorded is None:
            problems.append(f"{prompt.ref} is not recorded: run `python -m sleuth.prompts lock`")
        elif recorded != prompt.fingerprint:
            problems.append(f"{prompt.ref} changed without a version bump: raise `version` in "
                            f"prompts/{prompt.id}.toml, then run `python -m sleuth.prompts lock`")
    return problems


def update_lock() -> list[str]:
    """Record the current version of every prompt; an already recorded version must be unchanged."""
    lock = read_lock()
    added = []
    for prompt in all_prompts():
        versions = lock.setdefault(prompt.id, {})
        recorded = versions.get(str(prompt.version))
        if recorded is not None and recorded != prompt.fingerprint:
            raise ConfigError(f"{prompt.ref} is recorded with other text",
                              hint=f"raise `version` in prompts/{prompt.id}.toml: a version's text never changes")
        if recorded is None:
            versions[str(prompt.version)] = prompt.fingerprint
            added.append(prompt.ref)
    LOCK_FILE.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return added
