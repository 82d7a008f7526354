"""Rule atoms: the specific activities and objects a rule names, on the AnomalyRuler authors' rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sleuth.agents.rule_atoms import GENERIC, filter_contradictions, rule_atoms
from sleuth.agents.schemas import RuleSet

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomalyruler"


@pytest.fixture(scope="module")
def ped2() -> RuleSet:
    return RuleSet.parse((REAL / "ped2" / "rules.txt").read_text(), scene="ped2")


@pytest.fixture(scope="module")
def avenue() -> RuleSet:
    return RuleSet.parse((REAL / "avenue" / "rules.txt").read_text(), scene="avenue")


def atoms_of(ruleset: RuleSet, text: str) -> list[str]:
    rule = next(rule for rule in ruleset.rules if rule.text == text)
    return rule_atoms(rule.text)


def lowered(atoms: list[str]) -> list[str]:
    return [atom.lower() for atom in atoms]


def test_such_as_list_yields_its_activities(ped2: RuleSet) -> None:
    text = "Using any non-walking movement such as riding a bicycle or scooter, skateboarding"
    atoms = atoms_of(ped2, text)
    assert atoms[0] == text
    assert "riding a bicycle" in atoms and "skateboarding" in atoms


def test_or_between_verb_phrases_is_split(ped2: RuleSet) -> None:
    atoms = atoms_of(ped2, "Running or jumping")
    assert atoms == ["Running or jumping", "running", "jumping"]


def test_or_between_verb_phrases_is_split_on_avenue(avenue: RuleSet) -> None:
    atoms = atoms_of(avenue, "Lying or bending on the ground")
    assert "lying" in atoms and "bending on the ground" in atoms


def test_slash_is_never_split(avenue: RuleSet) -> None:
    text = "Graffiti on sign/wall (vandalism not common to the area)"
    atoms = atoms_of(avenue, text)
    assert atoms == [text]
    assert "wall" not in lowered(atoms) and "sign" not in lowered(atoms)


def test_parenthesised_explanation_and_generic_words_are_not_atoms(ped2: RuleSet) -> None:
    text = "Unattended bags or objects (security threat)"
    atoms = atoms_of(ped2, text)
    assert atoms[0] == text
    assert "objects" not in lowered(atoms)
    assert "security threat" not in lowered(atoms)


def test_parenthesised_list_yields_its_items_without_etc(ped2: RuleSet) -> None:
    atoms = atoms_of(ped2, "Unusual objects (vehicles, large unattended luggage, etc.)")
    assert "vehicles" in atoms and "large unattended luggage" in atoms
    assert not any(atom.strip(" .") == "etc" for atom in atoms)


def test_or_is_not_split_when_a_side_is_not_a_verb_phrase(ped2: RuleSet) -> None:
    assert atoms_of(ped2, "Damaged manhole cover or trees") == ["Damaged manhole cover or trees"]
    assert atoms_of(ped2, "Climbing on trees or into manhole/utility access points") == [
        "Climbing on trees or into manhole/utility access points"]


@pytest.mark.parametrize("scene", ["ped2", "avenue"])
def test_every_real_rule_keeps_its_whole_text_first_and_atoms_are_clean(
        scene: str, ped2: RuleSet, avenue: RuleSet) -> None:
    ruleset = {"ped2": ped2, "avenue": avenue}[scene]
    for rule in ruleset.rules:
        atoms = rule_atoms(rule.text)
        assert atoms[0] == rule.text
        assert len(set(lowered(atoms))) == len(atoms), atoms  # no duplicates, whatever the case
        for atom in atoms[1:]:
            assert atom == atom.strip(" .,") and len(atom) >= 4
            assert atom.lower() not in GENERIC
            assert "/" not in atom or atom == rule.text


def test_whole_text_is_kept_even_when_short() -> None:
    assert rule_atoms("Jumping") == ["Jumping"]


def test_parenthesised_list_keeps_words_that_contain_etc() -> None:
    atoms = rule_atoms("Carrying unusual items (stretchers, ladders, etc.)")
    assert "stretchers" in atoms and "ladders" in atoms


# --- filter_contradictions -------------------------------------------------------------------


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=float)
    return vector / np.linalg.norm(vector)


ATOMS = ["Riding a bicycle or walking fast", "riding a bicycle", "walking fast"]
WHOLE = {"Riding a bicycle or walking fast"}
ANOMALY_VECTORS = np.vstack([unit(1, 1, 0), unit(1, 0, 0), unit(0, 1, 0)])


def test_fragment_close_to_a_normal_rule_is_dropped_but_the_whole_rule_stays() -> None:
    normal = np.vstack([unit(0, 1, 0.1)])  # "walking quickly to class": close to "walking fast" and to the rule
    keep = filter_contradictions(ATOMS, ANOMALY_VECTORS, normal, WHOLE)
    assert keep == [0, 1]


def test_fragments_far_from_every_normal_rule_are_kept() -> None:
    normal = np.vstack([unit(0, 0, 1), unit(0.2, 0.2, 1)])
    assert filter_contradictions(ATOMS, ANOMALY_VECTORS, normal, WHOLE) == [0, 1, 2]


def test_no_normal_rules_keeps_every_atom() -> None:
    assert filter_contradictions(ATOMS, ANOMALY_VECTORS, np.zeros((0, 3)), WHOLE) == [0, 1, 2]


def test_max_cosine_is_the_cut() -> None:
    normal = np.vstack([unit(1, 1, 0)])  # cosine 0.707 with both fragments
    assert filter_contradictions(ATOMS, ANOMALY_VECTORS, normal, WHOLE, max_cosine=0.6) == [0]
    assert filter_contradictions(ATOMS, ANOMALY_VECTORS, normal, WHOLE, max_cosine=0.8) == [0, 1, 2]
