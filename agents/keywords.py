"""Anomaly keywords of a rule set, and whole-word matching of captions against them.

AnomalyRuler's "base" signal: a caption that names a keyword of an anomaly rule (a bicycle, a
car, running) is evidence of that rule, whatever an embedding thinks of the rest of the caption.
The keywords come from the rules themselves, by a fixed procedure that never looks at labels:

1. every word of every anomaly rule, lower-cased and stemmed (simple suffix stripping, so
   "bicycles" matches "bicycle" and "riding" matches "ride");
2. minus English stop words, rule-phrasing words ("unusual", "suspicious", "area", "moving"...)
   and things every pedestrian scene has ("person", "bag", "ground", "building"...);
3. minus every word that also occurs in a *normal* rule of the same rule set (the scene's normal
   context, e.g. "manhole", "trash bin", "trees" on Ped2);
4. plus a few fixed hyponyms of generic vehicle words ("vehicle" -> car, truck, van, cart...).

:class:`KeywordMatcher` compiles them once per rule set and tells, for a caption, which keywords
it names and which anomaly rules those keywords come from. The detect_captions graph fuses this
signal with the embedding margin (``DetectConfig.keyword_weight``); the caption benchmark's
``--keyword`` mode uses it alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sleuth.agents.schemas import RuleSet

STOP_WORDS = frozenset("""
a about above across after against along also among an and any are around as at away be because been
before behind being below beside besides between beyond both but by can could do does down during e each
eg either etc even every few for from g has have having he her here his how i ie if in including into is
it its itself just like may might more most much must near nearby no non nor not of off on once only onto
or other others out outside over own per she should so some such than that the their them then there
these they this those though through throughout to too toward towards under until up upon us via was
were what when where whether which while who whom whose why will with within without would yet
""".split())

# Words of rule phrasing and of every pedestrian scene: they say *how* a rule is meant, or name what
# is everywhere, not what is anomalous.
GENERIC_WORDS = frozenset("""
abnormal abnormally action activities activity anomalous anomaly apparent apparently appear appears
area areas
behavior behaviour big certain clear come comes coming common commonly comparison creating designated direction
displaying emergency engage engaging environment expected extended flow frequent generic get go going hazard hazards
high human humans individual individuals indicating information irregular item items kind large location
locations long low manner move movement movements moving normal object objects opposite period periods
place places possible potential presence public purpose reason restricted rule rules safety security
seeking seen seem seems sensitive service services similar small space spaces speed sudden suddenly suspicious
suspiciously thing things threat type typical unexpected unexpectedly unidentified unknown unusual usual
use using various very way zone zones
person people man men woman women someone somebody child children pedestrian pedestrians crowd group
bag bags backpack backpacks ground floor wall walls sign signs height building buildings street road
walkway pathway path sidewalk scene image frame camera background
""".split())

# A generic rule word stands for these concrete ones in captions.
HYPONYMS: dict[str, tuple[str, ...]] = {
    "vehicle": ("car", "truck", "van", "bus", "cart", "motorcycle", "motorbike", "jeep", "golf cart"),
    "transportation": ("car", "truck", "van", "bus", "cart"),
    "bicycle": ("bike", "cyclist", "biker", "bicyclist"),
    "skateboarding": ("skateboard", "skateboarder"),
    "scooter": ("scooting",),
}

# Irregular verb forms of actions; past participles used as adjectives ("fallen leaves") stay apart.
_IRREGULAR = {"ran": "run", "fell": "fall", "threw": "throw", "thrown": "throw",
              "lying": "lie", "lay": "lie", "lies": "lie", "people": "person", "men": "man",
              "women": "woman", "children": "child", "rode": "ride", "ridden": "ride"}
_KEEP_DOUBLE = set("lsz")
_WORD = re.compile(r"[a-z]+")


def stem(word: str) -> str:
    """A crude lemma: 'bicycles'/'bicycle' -> 'bicycl', 'running'/'runs' -> 'run', 'riding' -> 'rid'."""
    word = _IRREGULAR.get(word.lower(), word.lower())
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in _KEEP_DOUBLE and word[-1] not in "aeiou":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def stems(text: str) -> list[str]:
    return [stem(word) for word in _WORD.findall(text.lower())]


_GENERIC_STEMS = frozenset(stem(word) for word in GENERIC_WORDS)


def _is_content(word: str) -> bool:
    return len(word) > 2 and word not in STOP_WORDS and word not in GENERIC_WORDS and stem(word) not in _GENERIC_STEMS


def anomaly_keywords(rules: RuleSet) -> list[str]:
    """Keywords of the anomaly rules (surface forms, in rule order), by the procedure above.

    A content word right before a word of the normal rules is kept with it as a two-word phrase:
    in "Fallen tree or branches" with trees normal, "fallen tree" is anomalous, "fallen" alone not.
    """
    normal = {stem(word) for rule in rules.normal for word in _WORD.findall(rule.text.lower())}
    keywords: list[str] = []
    seen: set[str] = set()

    def add(word: str) -> None:
        key = " ".join(stems(word))
        if key and key not in seen:
            seen.add(key)
            keywords.append(word)

    for rule in rules.anomaly:
        words = _WORD.findall(rule.text.lower())
        for position, word in enumerate(words):
            if not _is_content(word) or stem(word) in normal:
                continue
            following = words[position + 1] if position + 1 < len(words) else None
            if following and stem(following) in normal and following not in STOP_WORDS:
                add(f"{word} {following}")
                continue
            add(word)
            for base, hyponyms in HYPONYMS.items():
                if stem(word) == stem(base):
                    for hyponym in hyponyms:
                        if stem(hyponym) not in normal:
                            add(hyponym)
    return keywords


def _compile(keywords: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(keyword, tuple(stems(keyword))) for keyword in keywords if stems(keyword)]


def match(caption: str, keywords: Iterable[str]) -> list[str]:
    """The keywords (single words or short phrases) found in ``caption`` as whole stemmed words."""
    return _match(caption, _compile(keywords))


def _match(caption: str, compiled: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    words = stems(caption)
    present = set(words)
    found = []
    for keyword, parts in compiled:
        if len(parts) == 1:
            hit = parts[0] in present
        else:
            hit = any(tuple(words[i:i + len(parts)]) == parts for i in range(len(words) - len(parts) + 1))
        if hit:
            found.append(keyword)
    return found


class KeywordMatcher:
    """The anomaly keywords of one rule set, compiled once; ``rules_of`` maps hits to rule texts."""

    def __init__(self, rules: RuleSet, keywords: Iterable[str] | None = None) -> None:
        self.keywords = list(keywords) if keywords is not None else anomaly_keywords(rules)
        self._compiled = _compile(self.keywords)
        self._rule_stems = [(rule.text, set(stems(rule.text))) for rule in rules.anomaly]

    @classmethod
    def from_keywords(cls, keywords: Iterable[str]) -> KeywordMatcher:
        """A matcher for given keywords, with no rules behind them (``rules_of`` finds none)."""
        return cls(RuleSet(scene="keywords", rules=[]), keywords)

    def match(self, caption: str) -> list[str]:
        """The keywords ``caption`` names, in keyword order."""
        return _match(caption, self._compiled)

    def rules_of(self, found: Iterable[str]) -> list[str]:
        """The anomaly rules (texts, in rule order) whose words include a found keyword."""
        found_stems = {part for keyword in found for part in stems(keyword)}
        return [text for text, words in self._rule_stems if found_stems & words]
