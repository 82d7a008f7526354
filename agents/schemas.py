"""Pydantic schemas shared by the rule agents, the rule memory and the detect graphs.

A :class:`RuleSet` is what AnomalyRuler calls "the rules": normal and anomaly rules, each in one of
two categories (human activities; objects and environment). It renders to, and parses from, the
Markdown layout of the AnomalyRuler authors' ``rules.txt`` so a person can read and edit it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, field_validator

Kind = Literal["normal", "anomaly"]
Category = Literal["human_activity", "object_environment"]
Source = Literal["induced", "aggregated", "user", "file"]

_HEADINGS: dict[tuple[Kind, Category], str] = {
    ("anomaly", "human_activity"): "Anomaly Human Activities",
    ("anomaly", "object_environment"): "Anomaly Non-Human Objects",
    ("normal", "human_activity"): "Normal Human Activities",
    ("normal", "object_environment"): "Normal Non-Human Objects",
}


class Rule(BaseModel):
    """One rule, e.g. ``anomaly / human_activity: Riding a bicycle on the walkway``."""

    text: str = Field(min_length=2, description="The rule, one short sentence or phrase.")
    kind: Kind
    category: Category = "human_activity"

    @field_validator("text")
    @classmethod
    def _tidy(cls, value: str) -> str:
        tidy = re.sub(r"\s+", " ", value).strip().rstrip(".").strip()
        if len(tidy) < 2:
            raise ValueError("a rule needs some text")
        return tidy

    @property
    def id(self) -> str:
        """Stable id from kind, category and text (same rule, same id, in any version)."""
        key = f"{self.kind}|{self.category}|{self.text.lower()}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def label(self) -> str:
        return f"{self.kind}: {self.text}"


class RuleSet(BaseModel):
    """The rules of one scene (camera), at one version."""

    scene: str = "default"
    rules: list[Rule] = Field(default_factory=list)
    version: int = Field(default=0, description="Version in the rule memory (0: not stored).")
    source: Source = "file"

    def of(self, kind: Kind, category: Category | None = None) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind and (category is None or r.category == category)]

    @property
    def normal(self) -> list[Rule]:
        return self.of("normal")

    @property
    def anomaly(self) -> list[Rule]:
        return self.of("anomaly")

    def render(self) -> str:
        """Markdown in the layout of AnomalyRuler's rules.txt (anomaly rules first)."""
        blocks = []
        for (kind, category), heading in _HEADINGS.items():
            rules = self.of(kind, category)
            if rules:
                lines = [f"**{heading}:**"] + [f"{i}. {r.text}" for i, r in enumerate(rules, 1)]
                blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    @classmethod
    def parse(cls, text: str, *, scene: str = "default", source: Source = "file") -> RuleSet:
        """Parse rules.txt-style Markdown: headings name kind and category, numbered lines rules.

        Headings are matched loosely ("Rules for Normal Human Activities:", "**Anomaly
        Non-Human Objects:**", "Normal objects"): 'anomal' or 'normal' gives the kind, and
        'object', 'environment' or 'non-human' the category.
        """
        rules: list[Rule] = []
        kind: Kind | None = None
        category: Category = "human_activity"
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            item = re.match(r"^(?:\d+[.)]|[-*•])\s+(.*)$", line)
            if item and kind is not None:
                rules.append(Rule(text=item.group(1).strip("* "), kind=kind, category=category))
                continue
            heading = line.strip("*#: ").lower()
            if "anomal" in heading or "normal" in heading:  # "abnormal" contains "normal": check it first
                kind = "anomaly" if re.search(r"anomal|abnormal", heading) else "normal"
                category = ("object_environment"
                            if re.search(r"object|environment|non-human|nonhuman", heading)
                            else "human_activity")
        return cls(scene=scene, rules=unique_rules(rules), source=source)


def unique_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The rules without repeats (same kind, category and text), first occurrence kept."""
    seen: set[str] = set()
    unique = []
    for rule in rules:
        if rule.id not in seen:
            seen.add(rule.id)
            unique.append(rule)
    return unique
