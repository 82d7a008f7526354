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
