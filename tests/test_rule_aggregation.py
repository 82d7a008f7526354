"""Rule aggregation with the real packaged MiniLM embedder, and the induction schema's mapping."""

from __future__ import annotations

import pytest
from sleuth.agents.rules import InducedRules, aggregate_rules
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.tools.embedder import TextEmbedder


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


def ruleset(*rules: tuple[str, str] | tuple[str, str, str]) -> RuleSet:
    return RuleSet(rules=[Rule(text=text, kind=kind, category=rest[0] if rest else "human_activity")
                          for kind, text, *rest in rules], source="induced")


def texts(merged: RuleSet) -> list[tuple[str, str]]:
    return [(rule.kind, rule.text) for rule in merged.rules]


@pytest.mark.slow
def test_semantic_duplicates_collapse_into_the_first_wording(embedder: TextEmbedder) -> None:
    merged = aggregate_rules([ruleset(("anomaly", "Riding a bicycle")), ruleset(("anomaly", "riding bicycles"))],
                             embedder=embedder)
    assert texts(merged) == [("anomaly", "Riding a bicycle")]


@pytest.mark.slow
def test_normal_rule_contradicting_an_anomaly_rule_is_dropped(embedder: TextEmbedder) -> None:
    # the normal rule comes first, and from another video: the stricter anomaly rule still wins
    merged = aggregate_rules([ruleset(("normal", "Riding a bicycle on the path"), ("normal", "Walking on the path")),
                              ruleset(("anomaly", "Riding a bicycle"))], embedder=embedder)
    assert texts(merged) == [("anomaly", "Riding a bicycle"), ("normal", "Walking on the path")]


@pytest.mark.slow
def test_every_unique_anomaly_rule_is_kept_in_stable_order(embedder: TextEmbedder) -> None:
    first = ruleset(("normal", "Walking on the sidewalk"), ("anomaly", "Running"),
                    ("anomaly", "A car on the walkway", "object_environment"))
    second = ruleset(("anomaly", "Skateboarding"), ("normal", "Trees along the path", "object_environment"),
                     ("anomaly", "Fighting"), ("anomaly", "Running"))
    merged = aggregate_rules([first, second], scene="ped2", embedder=embedder)
    assert texts(merged) == [
        ("anomaly", "Running"), ("anomaly", "A car on the walkway"), ("anomaly", "Skateboarding"),
        ("anomaly", "Fighting"),
        ("normal", "Walking on the sidewalk"), ("normal", "Trees along the path"),
    ]
    assert merged.of("anomaly", "object_environment")[0].text == "A car on the walkway"
    assert merged.scene == "ped2" and merged.source == "aggregated"
    # aggregating again changes nothing
    assert aggregate_rules([merged], scene="ped2", embedder=embedder).rules == merged.rules


@pytest.mark.slow
def test_distinct_normal_rules_are_kept(embedder: TextEmbedder) -> None:
    merged = aggregate_rules([ruleset(("normal", "Walking on the sidewalk"), ("normal", "Sitting on a bench"),
                                      ("normal", "Trees along the path", "object_environment"))], embedder=embedder)
    assert len(merged.normal) == 3 and merged.anomaly == []


def test_no_rules_aggregate_to_an_empty_set_without_loading_a_model() -> None:
    class Unusable:
        def __call__(self, texts: list[str]) -> None:
            raise AssertionError("no rules: nothing to embed")

    merged = aggregate_rules([RuleSet(), RuleSet()], scene="x", embedder=Unusable())  # type: ignore[arg-type]
    assert merged.rules == [] and merged.source == "aggregated" and merged.scene == "x"


def test_induced_rules_map_to_kinds_and_categories() -> None:
    induced = InducedRules(normal_human_activities=["Walking on the path"],
                           normal_objects=["Trees along the path", " "],
                           anomaly_human_activities=["Riding a bicycle", "Running."],
                           anomaly_objects=["A car on the walkway"])
    ruleset = induced.to_ruleset("ped2")
    assert ruleset.scene == "ped2" and ruleset.source == "induced"
    assert [(r.kind, r.category, r.text) for r in ruleset.rules] == [
        ("anomaly", "human_activity", "Riding a bicycle"),
        ("anomaly", "human_activity", "Running"),
        ("anomaly", "object_environment", "A car on the walkway"),
        ("normal", "human_activity", "Walking on the path"),
        ("normal", "object_environment", "Trees along the path"),
    ]


def test_induced_rules_limit_each_list() -> None:
    with pytest.raises(ValueError):
        InducedRules(normal_human_activities=[f"rule {i}" for i in range(13)], normal_objects=[],
                     anomaly_human_activities=[], anomaly_objects=[])
