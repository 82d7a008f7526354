"""Rule atoms: the specific activities and objects a rule names, for sharper matching.

A rule such as "Using any non-walking movement such as riding a bicycle or scooter,
skateboarding" embeds as a blur of its words; a caption clause "person is riding a bicycle" is
closer to the atom "riding a bicycle" than to the whole rule. :func:`rule_atoms` splits a rule
conservatively and deterministically:

- the items of a "such as ..." list or a parenthesised list ("Unusual objects (vehicles, large
  unattended luggage, etc.)");
- alternatives joined by "or" when each side is a verb phrase ("Running or jumping",
  "Lying or bending on the ground");
- never on "/" or "and", and never into a lone generic word ("objects", "area").

The whole rule is always kept as an atom too. :func:`filter_contradictions` then drops anomaly
atoms that sit too close to a normal rule (the stricter rule still stands through the whole
text, but an ambiguous fragment must not flag normal frames).
"""

from __future__ import annotations

import re

import numpy as np

GENERIC = {"objects", "object", "items", "item", "things", "thing", "area", "areas", "structures", "structure",
           "etc", "others", "other", "behavior", "behaviour", "movements", "movement", "activities", "activity"}


def _items(text: str) -> list[str]:
    return [item.strip(" .") for item in re.split(r",|\bor\b", text) if item.strip(" .")]


def _verb_phrase(text: str) -> bool:
    return bool(re.match(r"^\w+ing\b", text.strip().lower()))


def rule_atoms(text: str) -> list[str]:
    """The rule itself plus the specific phrases it lists (see the module docstring)."""
    atoms = [text]
    lowered = text.lower()
    for inner in re.findall(r"\(([^)]*)\)", lowered):
        if "," in inner:  # a list of examples, not an explanation such as "(security threat)"
            atoms += [item for item in _items(re.sub(r"\betc\b\.?", "", inner)) if item]
    head = re.sub(r"\([^)]*\)", "", lowered).strip()
    if " such as " in head:
        head, listed = head.split(" such as ", 1)
        atoms += _items(listed)
    sides = [side.strip(" .,") for side in re.split(r"\bor\b", head)]
    if len(sides) > 1 and all(_verb_phrase(side) for side in sides if side):
        atoms += [side for side in sides if side]
    cleaned = []
    for atom in atoms:
        atom = re.sub(r"\s+", " ", atom).strip(" .,")
        words = re.findall(r"[a-z]+", atom.lower())
        if len(atom) < 4 or not words or all(word in GENERIC for word in words):
            continue
        if atom.lower() not in (seen.lower() for seen in cleaned):
            cleaned.append(atom)
    return cleaned


def filter_contradictions(anomaly_atoms: list[str], anomaly_vectors: np.ndarray, normal_vectors: np.ndarray,
                          whole_rules: set[str], max_cosine: float = 0.6) -> list[int]:
    """Indices of anomaly atoms to keep: whole rules always, fragments only if no normal rule is close."""
    if normal_vectors.size == 0:
        return list(range(len(anomaly_atoms)))
    closest = (anomaly_vectors @ normal_vectors.T).max(axis=1)
    return [i for i, atom in enumerate(anomaly_atoms) if atom in whole_rules or closest[i] < max_cosine]
