"""Rule and RuleSet: parsing and rendering the Markdown layout of AnomalyRuler's rules.txt."""

from __future__ import annotations

from pathlib import Path

import pytest
from sleuth.agents.schemas import Rule, RuleSet

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomalyruler"


def real(scene: str) -> RuleSet:
    return RuleSet.parse((REAL / scene / "rules.txt").read_text(), scene=scene)


@pytest.mark.parametrize(("scene", "anomaly", "normal"), [("ped2", 26, 19), ("avenue", 21, 20)])
def test_real_rules_parse_into_anomaly_and_normal(scene: str, anomaly: int, normal: int) -> None:
    ruleset = real(scene)
    assert ruleset.scene == scene and ruleset.source == "file"
    assert len(ruleset.anomaly) == anomaly
    assert len(ruleset.normal) == normal
    assert len(ruleset.rules) == anomaly + normal


@pytest.mark.parametrize(("scene", "counts"), [("ped2", (12, 14, 9, 10)), ("avenue", (11, 10, 10, 10))])
def test_real_rules_split_into_categories(scene: str, counts: tuple[int, int, int, int]) -> None:
    ruleset = real(scene)
    got = (len(ruleset.of("anomaly", "human_activity")), len(ruleset.of("anomaly", "object_environment")),
           len(ruleset.of("normal", "human_activity")), len(ruleset.of("normal", "object_environment")))
    assert got == counts


def test_real_rules_land_under_the_right_heading() -> None:
    ped2 = real("ped2")
    by_text = {rule.text: rule for rule in ped2.rules}
    assert (by_text["Running or jumping"].kind, by_text["Running or jumping"].category) == \
        ("anomaly", "human_activity")
    assert (by_text["Missing, removed, or ajar manhole covers"].kind,
            by_text["Missing, removed, or ajar manhole covers"].category) == ("anomaly", "object_environment")
    assert (by_text["Walking on the sidewalk"].kind, by_text["Walking on the sidewalk"].category) == \
        ("normal", "human_activity")
    assert (by_text["Standing fire hydrant"].kind, by_text["Standing fire hydrant"].category) == \
        ("normal", "object_environment")
    # the first and last rule of the file, in order
    assert ped2.rules[0].text == "Running or jumping"
    assert ped2.rules[-1].text == "Utility access points on the ground"


def test_real_rules_keep_avenue_duplicate_numbering() -> None:
    # avenue's rules.txt numbers two rules "2."; both are rules
    texts = [rule.text for rule in real("avenue").of("anomaly", "human_activity")]
    assert "Moving opposite against the flow of pedestrian traffic" in texts
    assert "Loitering with unusual behavior or in a restricted area" in texts


@pytest.mark.parametrize("scene", ["ped2", "avenue"])
def test_render_then_parse_round_trips(scene: str) -> None:
    ruleset = real(scene)
    rendered = ruleset.render()
    assert RuleSet.parse(rendered, scene=scene) == ruleset
    assert rendered.index("**Anomaly Human Activities:**") < rendered.index("**Normal Human Activities:**")


def test_render_skips_empty_groups() -> None:
    ruleset = RuleSet(rules=[Rule(text="Walking", kind="normal")])
    assert ruleset.render() == "**Normal Human Activities:**\n1. Walking\n"
    assert RuleSet().render().strip() == ""


def test_loose_headings() -> None:
    text = """Rules for Normal Human Activities:
- Walking on the path

**Anomaly Non-Human Objects:**
1) A car on the walkway

## Anomaly human activities
* Riding a bicycle

Normal objects
• Trees along the path
"""
    ruleset = RuleSet.parse(text)
    assert [(r.kind, r.category, r.text) for r in ruleset.rules] == [
        ("normal", "human_activity", "Walking on the path"),
        ("anomaly", "object_environment", "A car on the walkway"),
        ("anomaly", "human_activity", "Riding a bicycle"),
        ("normal", "object_environment", "Trees along the path"),
    ]


def test_items_before_any_heading_are_ignored_and_duplicates_dropped() -> None:
    text = "1. Orphan rule\n**Anomaly Human Activities:**\n1. Running\n2. running.\n3. Running  \n"
    ruleset = RuleSet.parse(text)
    assert [r.text for r in ruleset.rules] == ["Running"]


def test_same_text_under_two_kinds_is_two_rules() -> None:
    text = "**Anomaly Human Activities:**\n1. Running\n**Normal Human Activities:**\n1. Running\n"
    assert [r.kind for r in RuleSet.parse(text).rules] == ["anomaly", "normal"]


def test_abnormal_heading_means_anomaly() -> None:
    ruleset = RuleSet.parse("**Abnormal Human Activities:**\n1. Riding a bicycle\n")
    assert [r.kind for r in ruleset.rules] == ["anomaly"]


# --- Rule ------------------------------------------------------------------------------------


def test_rule_text_is_tidied() -> None:
    assert Rule(text="  Riding   a\n bicycle.  ", kind="anomaly").text == "Riding a bicycle"
    assert Rule(text="Running...", kind="anomaly").text == "Running"


def test_rule_id_is_stable_and_ignores_case_and_tidying() -> None:
    rule = Rule(text="Riding a bicycle", kind="anomaly")
    assert rule.id == Rule(text="Riding a bicycle", kind="anomaly").id
    assert rule.id == Rule(text="riding a  bicycle.", kind="anomaly").id
    assert len(rule.id) == 12 and int(rule.id, 16) >= 0
    # a pinned value: ids are stored in the rule memory, so they must not change between versions
    assert rule.id == "c3f3e4b89d63"  # sha1("anomaly|human_activity|riding a bicycle")[:12]


def test_rule_id_depends_on_kind_and_category() -> None:
    ids = {Rule(text="Bicycles", kind=kind, category=category).id
           for kind in ("anomaly", "normal") for category in ("human_activity", "object_environment")}
    assert len(ids) == 4


def test_rule_label() -> None:
    assert Rule(text="Running", kind="anomaly").label() == "anomaly: Running"


def test_space_before_trailing_period_is_tidied() -> None:
    rule = Rule(text="Riding a bicycle .", kind="anomaly")
    assert rule.text == "Riding a bicycle"
    assert rule.id == Rule(text="Riding a bicycle", kind="anomaly").id


def test_rule_that_tidies_to_nothing_is_rejected() -> None:
    with pytest.raises(ValueError):
        Rule(text=" . ", kind="anomaly")
