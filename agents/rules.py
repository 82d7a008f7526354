"""Rule induction and aggregation (AnomalyRuler's induction stage, HyCoVAD's rule generation).

- :func:`induce_rules`: one LLM call turns captions of a scene into normal and anomaly rules.
- :func:`aggregate_rules`: merges rule sets without an LLM: semantic duplicates (embedder cosine
  above a threshold) collapse into the first wording, a normal rule that contradicts an anomaly
  rule (near-identical meaning) is dropped so the stricter rule wins, and every unique anomaly
  rule is kept. The output order is stable (anomaly before normal, first seen first).
- :func:`induce_from_unlabeled`: HyCoVAD's recipe for footage without normal references: sample
  captions of each video, induce per video, aggregate.
- :func:`hold_on_normal_footage`: for footage known to be normal (calibration), rules about
  screen positions lose the position (or go, when nothing but a generic object is left), and an
  anomaly rule that names only the dominant activities and objects of that footage ("Walking on
  the pathway" where 88 % of the captions say "walking") becomes a normal rule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.agents.faithfulness import VOCABULARY
from sleuth.agents.schemas import Category, Kind, Rule, RuleSet, unique_rules
from sleuth.errors import SleuthError, StructuredOutputError
from sleuth.llm.gateway import Gateway, get_gateway
from sleuth.prompts import load_prompt
from sleuth.tools.embedder import TextEmbedder

DUPLICATE_COSINE = 0.85  # two rules this close say the same thing
PLACEHOLDERS = {"none", "n/a", "na", "nothing", "no", "null", "unknown", "other", "others"}
COMMON_COVERAGE = 0.7  # an anomaly rule matching this share of sampled captions describes normality
MATCH_COSINE = 0.6  # a caption piece this close to a rule matches it
CONTRADICTION_COSINE = 0.60  # a normal rule this close to an anomaly rule contradicts it ("Car" vs "Vehicles": 0.8)


class InducedRules(BaseModel):
    """The schema the induction prompt answers in (grammar-constrained for the local model)."""

    normal_human_activities: list[str] = Field(max_length=12)
    normal_objects: list[str] = Field(max_length=12)
    anomaly_human_activities: list[str] = Field(max_length=12)
    anomaly_objects: list[str] = Field(max_length=12)

    def to_ruleset(self, scene: str) -> RuleSet:
        groups: list[tuple[list[str], Kind, Category]] = [
            (self.anomaly_human_activities, "anomaly", "human_activity"),
            (self.anomaly_objects, "anomaly", "object_environment"),
            (self.normal_human_activities, "normal", "human_activity"),
            (self.normal_objects, "normal", "object_environment"),
        ]
        rules = [Rule(text=text, kind=kind, category=category)
                 for texts, kind, category in groups for text in texts
                 if len(text.strip(" .")) >= 2 and text.strip(" .").lower() not in PLACEHOLDERS]
        return RuleSet(scene=scene, rules=rules, source="induced")


def induce_rules(captions: Sequence[str], *, scene: str = "default", gateway: Gateway | None = None,
                 max_rules: int = 8) -> RuleSet:
    """Induce normal and anomaly rules from captions (normal reference frames or a sample)."""
    captions = [caption.strip() for caption in captions if caption.strip()]
    if not captions:
        raise SleuthError("no captions to induce rules from", hint="pass non-empty captions")
    prompt = load_prompt("rules.induction")
    gateway = gateway or get_gateway()
    with telemetry.agent_span("rule_induction"):
        listed = "\n".join(f"- {caption}" for caption in captions)
        answer = gateway.structured(prompt.messages(captions=listed, max_rules=max_rules), InducedRules,
                                    max_tokens=700)
    return answer.to_ruleset(scene)


def aggregate_rules(rulesets: Sequence[RuleSet], *, scene: str = "default",
                    embedder: TextEmbedder | None = None) -> RuleSet:
    """Merge rule sets: semantic de-duplication, stricter rule wins, every unique anomaly rule kept."""
    with telemetry.agent_span("rule_aggregation"):
        candidates = [rule for ruleset in rulesets for rule in ruleset.anomaly] + \
                     [rule for ruleset in rulesets for rule in ruleset.normal]
        if not candidates:
            return RuleSet(scene=scene, rules=[], source="aggregated")
        embedder = embedder or TextEmbedder()
        vectors = embedder([rule.text for rule in candidates])
        kept: list[int] = []
        for index, rule in enumerate(candidates):
            similar = [k for k in kept if float(vectors[index] @ vectors[k]) >= DUPLICATE_COSINE]
            if any(candidates[k].kind == rule.kind for k in similar):
                continue  # a duplicate of a rule already kept
            if rule.kind == "normal" and any(
                    candidates[k].kind == "anomaly" and float(vectors[index] @ vectors[k]) >= CONTRADICTION_COSINE
                    for k in kept):
                continue  # contradicts an anomaly rule: the stricter (anomaly) rule wins
            kept.append(index)
        return RuleSet(scene=scene, rules=[candidates[k] for k in kept], source="aggregated")


def induce_from_unlabeled(captions_by_video: Mapping[str, Sequence[str]], *, per_video: int = 20,
                          scene: str = "default", seed: int = 0, gateway: Gateway | None = None,
                          embedder: TextEmbedder | None = None) -> RuleSet:
    """HyCoVAD: sample ``per_video`` captions of each video (evenly spread), induce, aggregate."""
    rng = random.Random(seed)
    rulesets, malformed = [], []
    for video, captions in captions_by_video.items():
        pool = sorted({caption.strip() for caption in captions if caption.strip()})
        if not pool:
            continue
        sample = rng.sample(pool, min(per_video, len(pool)))
        with telemetry.agent_span(f"rule_induction {video}"):
            try:
                rulesets.append(induce_rules(sample, scene=scene, gateway=gateway))
            except StructuredOutputError as exc:  # one bad answer of a small model: the other samples still speak
                malformed.append(exc)
    if not rulesets and malformed:
        raise malformed[0]
    if not rulesets:
        raise SleuthError("every video's captions are empty", hint="check the caption files")
    embedder = embedder or TextEmbedder()
    merged = aggregate_rules(rulesets, scene=scene, embedder=embedder)
    pool = [caption for captions in captions_by_video.values() for caption in captions if caption.strip()]
    merged = demote_common_anomalies(merged, rng.sample(pool, min(len(pool), 200)), embedder)
    return merged.model_copy(update={"source": "induced"})


def demote_common_anomalies(rules: RuleSet, captions: Sequence[str], embedder: TextEmbedder,
                            coverage: float = COMMON_COVERAGE) -> RuleSet:
    """Unlabeled footage is mostly normal, so an "anomaly" rule that describes most of a sample of
    its captions describes the scene's normality: it becomes a normal rule. Small LLMs often list
    what they see ("Walking on the pathway", "Trees") as anomalies; this undoes that."""
    from sleuth.tools.captions import evidence_pieces

    pieces = [evidence_pieces(caption) for caption in captions]
    flat = sorted({piece for frame in pieces for piece in frame})
    if not flat or not rules.anomaly:
        return rules
    similarity = embedder([rule.text for rule in rules.anomaly]) @ embedder(flat).T
    position = {piece: index for index, piece in enumerate(flat)}
    demoted = set()
    for index, rule in enumerate(rules.anomaly):
        hits = sum(1 for frame in pieces
                   if frame and max(similarity[index, position[piece]] for piece in frame) >= MATCH_COSINE)
        if hits >= coverage * len(pieces):
            demoted.add(rule.id)
    if not demoted:
        return rules
    updated = [Rule(text=rule.text, kind="normal", category=rule.category) if rule.id in demoted else rule
               for rule in rules.rules]
    return rules.model_copy(update={"rules": updated})



DOMINANT_SHARE = 0.5  # an activity or object in at least half of the normal captions is the scene's normal
POSITION = re.compile(r"\s*\b(?:(?:at|in|on|near|to|towards?|from) (?:the )?)?(?:(?:top|bottom|upper|lower|far) )?"
                      r"(?:left|right|centre|center|middle|top|bottom)(?: (?:left|right|corner|side|edge|part|"
                      r"of the (?:frame|image|screen|picture|scene)))?\b(?= |$|,)", re.IGNORECASE)
DIRECTION = re.compile(r"\b(?:to|towards?) the (?:left|right)\b", re.IGNORECASE)
FILLER = {"a", "an", "the", "large", "small", "big", "little", "some", "is", "are", "in", "at", "on", "of", "and"}
GENERIC_THINGS = {"object", "objects", "item", "items", "thing", "things", "area", "region", "part", "person",
                  "people", "movement", "something"}


COLOUR_TAIL = re.compile(r"(?:,\s*|\s+in\s+)(?:(?:light|dark|bright)\s+)?(?:red|orange|yellow|green|blue|purple|pink|"
                         r"brown|black|white|grey|gray)\s*$|(?:\s+(?:and|or|,))+\s*$", re.IGNORECASE)


def _without_position(text: str) -> str | None:
    """The rule without screen positions ("Large object in the centre" -> None: nothing specific is left)
    and without a caption's trailing colour ("person walking away, dark grey" -> "person walking away")."""
    original = text
    while COLOUR_TAIL.search(text):
        text = COLOUR_TAIL.sub("", text).strip()
    directions = DIRECTION.findall(text)  # "walking to the left" is a direction of motion: keep it
    masked = DIRECTION.sub("\0", text)
    stripped = POSITION.sub("", masked)
    for direction in directions:
        stripped = stripped.replace("\0", direction, 1)
    stripped = re.sub(r"\s+", " ", stripped).strip(" ,.")
    while COLOUR_TAIL.search(stripped):  # "toward the camera and left" -> "toward the camera and" -> ...
        stripped = COLOUR_TAIL.sub("", stripped).strip(" ,.")
    words = [w for w in re.findall(r"[a-z]+", stripped.lower()) if w not in FILLER]
    if stripped == original.strip(" ,."):
        return original
    if not words or all(w in GENERIC_THINGS for w in words):
        return None
    return stripped[0].upper() + stripped[1:]


def named_terms(text: str) -> set[str]:
    """The action and object words of the faithfulness vocabulary that ``text`` names (plurals too)."""
    words = re.findall(r"[a-z]+", text.lower())
    return {w if w in VOCABULARY else w[:-1] for w in words if w in VOCABULARY or w[:-1] in VOCABULARY}


def unseen_terms(text: str, captions: Sequence[str]) -> set[str]:
    """The words ``text`` names that no caption supports: a rule about them cannot describe the footage."""
    lowered = " ".join(caption.lower() for caption in captions)
    return {w for w in named_terms(text) if not any(stem in lowered for stem in VOCABULARY[w])}


def dominant_terms(captions: Sequence[str], share: float = DOMINANT_SHARE) -> set[str]:
    """The action and object words (faithfulness vocabulary) whose stems appear in at least ``share``
    of ``captions``."""
    lowered = [caption.lower() for caption in captions if caption.strip()]
    if not lowered:
        return set()
    # a word's own stem (its first), not every caption word that would support it: "crowd" is not
    # dominant because most captions say "people"
    return {word for word, stems in VOCABULARY.items()
            if sum(stems[0] in caption for caption in lowered) >= share * len(lowered)}


def hold_on_normal_footage(rules: RuleSet, normal_captions: Sequence[str], *,
                           share: float = DOMINANT_SHARE) -> tuple[RuleSet, list[str]]:
    """The rules made to hold on the footage they were induced from (which is normal), and what
    changed, one line each."""
    dominant = dominant_terms(normal_captions, share)
    changes: list[str] = []
    kept: list[Rule] = []
    for rule in rules.rules:
        text = _without_position(rule.text)
        if text is None:
            changes.append(f"dropped {rule.label()!r}: a screen position, not a behaviour or an object")
            continue
        if text != rule.text:
            changes.append(f"{rule.label()!r} -> {text!r}: screen position or a caption's colour removed")
        kind = rule.kind
        named = named_terms(text)
        if kind == "anomaly" and named and named <= dominant:
            kind = "normal"
            changes.append(f"{rule.label()!r} became normal: {', '.join(sorted(named))} is what most of the normal "
                           "footage shows")
        kept.append(Rule(text=text, kind=kind, category=rule.category))
    return rules.model_copy(update={"rules": unique_rules(kept)}), changes
