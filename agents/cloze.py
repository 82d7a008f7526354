"""AnomalyLMM's re-ranking agents: cloze generation, cloze completion, comparison and score fusion.

1. :func:`generate_cloze`: the LLM marks every action verb of the query as ``<VERB>_i`` and every
   colour as ``<COLOR>_i`` (auxiliary and modal verbs stay). Only *which words* it marked is
   trusted: the cloze text is rebuilt from the query, so the model cannot rewrite it. Colours and
   common action verbs it missed are masked from a lexicon, auxiliaries/modals it masked are
   unmasked, and when its answer stays invalid the cloze comes from the lexicon alone (``source``
   says which).
2. :func:`complete_cloze`: per candidate, one word per slot, or ``UNKNOWN``, from visual evidence:
   the crop itself for a VLM (a LiteLLM ``vlm`` role, or a local transformers VLM), else the
   captioner's description of the candidate (the embedded default).
3. :func:`compare`: does each filled word mean the query's word? Identical stems and colours of
   one family match and ``UNKNOWN`` never does, in code; the other pairs go to the LLM in one call.
4. :func:`rank_positions` and :func:`fuse`: candidates ranked by matched slots (ties share a
   rank ``n``, 0 best), then ``S = a1*S1 + a2*beta**n`` (AnomalyLMM: beta 0.5, a2 0.075).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.errors import StructuredOutputError
from sleuth.llm.gateway import Gateway, user_message
from sleuth.memory.gallery import GalleryItem
from sleuth.prompts import load_prompt

UNKNOWN = "UNKNOWN"
SlotKind = Literal["VERB", "COLOR"]

# Colour families: two colour words match when their families are equal and differ otherwise, without
# asking a model (a small model calls white and dark "equivalent"). "dark" and "light" stand for the
# dark and light neutrals (a describer's "dark grey" fills a one-word slot as "dark").
COLOUR_FAMILY = {
    "red": "red", "maroon": "red", "crimson": "red", "orange": "orange", "yellow": "yellow", "gold": "yellow",
    "golden": "yellow", "green": "green", "olive": "green", "blue": "blue", "navy": "blue", "cyan": "blue",
    "turquoise": "blue", "purple": "purple", "violet": "purple", "pink": "pink", "brown": "brown", "tan": "brown",
    "beige": "brown", "khaki": "brown", "black": "dark", "dark": "dark", "white": "light", "light": "light",
    "grey": "grey", "gray": "grey", "silver": "grey", "scarlet": "red", "burgundy": "red", "teal": "blue",
    "indigo": "blue", "magenta": "pink", "lime": "green", "cream": "light", "ivory": "light", "charcoal": "dark",
}
COLOURS = frozenset(COLOUR_FAMILY) - {"dark", "light"}  # words masked as colours in a query
# Words a small model marks as verbs although they never are (it copies the examples' slot pattern).
FUNCTION_WORDS = frozenset("a an the on at near in into onto to of with without down up by from over under behind "
                           "across along past toward towards through around beside between and or but while".split())
AUXILIARIES = frozenset("is are was were be been being am has have had do does did".split())
MODALS = frozenset("can could may might must shall should will would".split())
# The lexicon fallback's action verbs (besides -ing forms): common surveillance actions and their forms.
ACTION_VERBS = frozenset("""walk walks walked run runs ran ride rides rode fall falls fell fallen carry carries carried
push pushes pushed pull pulls pulled fight fights fought hit hits kick kicks kicked grab grabs grabbed steal steals
stole stolen jump jumps jumped throw throws threw thrown chase chases chased stand stands stood sit sits sat lie lies
lay crawl crawls crawled hold holds held rob robs robbed attack attacks attacked drop drops dropped enter enters
entered leave leaves wear wears wore worn climb climbs climbed loiter loiters loitered punch punches punched
explode explodes exploded burn burns burned burnt skate skates skated cycle cycles cycled wave waves waved""".split())
NOT_VERBS_ING = frozenset("clothing building something anything nothing everything evening morning ceiling thing "
                          "king ring string wing spring railing parking crossing during sibling ".split())
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


class Slot(BaseModel):
    name: str = Field(description="VERB_1, COLOR_2, ...")
    kind: SlotKind
    answer: str = Field(description="The query's word that the slot replaces.")


class Cloze(BaseModel):
    query: str
    text: str = Field(description="The query with each slot word replaced by <VERB>_i / <COLOR>_i.")
    slots: list[Slot] = Field(default_factory=list)
    source: Literal["llm", "llm+lexicon", "lexicon"] = "llm"


class SlotAnswer(BaseModel):
    name: str = Field(max_length=12)
    kind: SlotKind
    answer: str = Field(min_length=1, max_length=30)


class ClozeAnswer(BaseModel):
    """What the model writes for cloze generation (its ``text`` is not used: see the module doc)."""

    text: str = Field(max_length=400)
    slots: list[SlotAnswer] = Field(max_length=10)


class Completion(BaseModel):
    """One candidate's filled slots, and which of them match the query."""

    item_id: str
    fills: dict[str, str] = Field(default_factory=dict, description="slot name -> one word or UNKNOWN")
    source: Literal["vlm", "local-vlm", "description"] = "description"
    evidence: str = Field(default="", description="The description the LLM filled from (description mode).")
    matches: dict[str, bool] = Field(default_factory=dict, description="slot name -> same meaning as the query's")
    error: str | None = Field(default=None, description="Why the model's answer was not used (all UNKNOWN).")

    @property
    def matched(self) -> int:
        return sum(self.matches.values())


class LocalVLM(Protocol):
    """A transformers VLM in this process (``TransformersCaptioner.ask``)."""

    def ask(self, images: Sequence[Any], prompt: str) -> list[str]: ...


# -- 1. cloze generation ----------------------------------------------------------------------

def generate_cloze(query: str, *, gateway: Gateway, max_tokens: int = 200) -> Cloze:
    """The query as a cloze (see the module doc for what is trusted from the model)."""
    words = list(_WORD.finditer(query))
    with telemetry.agent_span("cloze_generate"):
        try:
            answer = gateway.structured(load_prompt("search.cloze.generate").messages(query=query), ClozeAnswer,
                                        max_tokens=max_tokens)
        except StructuredOutputError:
            answer = None
    model_labels = _label_words(words, [(slot.kind, slot.answer) for slot in answer.slots]) if answer else {}
    labels = with_lexicon(words, model_labels)
    source = "lexicon" if answer is None else "llm" if labels == model_labels else "llm+lexicon"
    return build_cloze(query, labels, source=source)


def lexicon_cloze(query: str) -> Cloze:
    """The cloze without a model: lexicon colours, -ing forms and common action verbs."""
    return build_cloze(query, with_lexicon(list(_WORD.finditer(query)), {}), source="lexicon")


def with_lexicon(words: Sequence[re.Match[str]], labels: Mapping[int, SlotKind]) -> dict[int, SlotKind]:
    """``labels`` with auxiliaries, modals, function words and non-colours unmasked, and lexicon colours and
    action verbs masked."""
    result = dict(labels)
    for position, match in enumerate(words):
        word = match.group().lower()
        if result.get(position) == "VERB" and (word in AUXILIARIES or word in MODALS or word in FUNCTION_WORDS):
            del result[position]  # auxiliaries and modals stay; prepositions and articles are no verbs
        if result.get(position) == "COLOR" and word not in COLOUR_FAMILY:
            del result[position]  # a small model marks nouns ("dog", "walkway") as colours
        if word in COLOURS:
            result[position] = "COLOR"
        elif position not in result and _looks_like_action(word):
            result[position] = "VERB"  # a small model often misses verbs ("explodes", "fighting")
    return result


def build_cloze(query: str, labels: Mapping[int, SlotKind], *, source: str = "llm") -> Cloze:
    """Replace the labelled words (by position among the query's words) with numbered slots."""
    pieces, slots, counts, last = [], [], {"VERB": 0, "COLOR": 0}, 0
    for position, match in enumerate(_WORD.finditer(query)):
        kind = labels.get(position)
        if kind is None:
            continue
        counts[kind] += 1
        name = f"{kind}_{counts[kind]}"
        pieces.append(query[last:match.start()] + f"<{kind}>_{counts[kind]}")
        last = match.end()
        slots.append(Slot(name=name, kind=kind, answer=match.group().lower()))
    pieces.append(query[last:])
    return Cloze(query=query, text="".join(pieces), slots=slots, source=source)  # type: ignore[arg-type]


def _label_words(words: Sequence[re.Match[str]], marked: Iterable[tuple[SlotKind, str]]) -> dict[int, SlotKind]:
    """Positions of the words the model marked: each marked word takes its first unused occurrence."""
    labels: dict[int, SlotKind] = {}
    for kind, answer in marked:
        wanted = answer.strip().lower()
        for position, match in enumerate(words):
            if position not in labels and match.group().lower() == wanted:
                labels[position] = kind
                break
    return labels


def _looks_like_action(word: str) -> bool:
    return word in ACTION_VERBS or (word.endswith("ing") and len(word) > 4 and word not in NOT_VERBS_ING)


# -- 2. cloze completion ----------------------------------------------------------------------

def completion_schema(cloze: Cloze) -> dict[str, Any]:
    return {"title": "ClozeFill", "type": "object", "additionalProperties": False,
            "required": [slot.name for slot in cloze.slots],
            "properties": {slot.name: {"type": "string", "minLength": 1, "maxLength": 24} for slot in cloze.slots}}


def _completion_messages(cloze: Cloze, evidence: str) -> list[dict[str, Any]]:
    kinds = {"VERB": "an action verb", "COLOR": "a colour word"}
    slots = "; ".join(f"{slot.name}: {kinds[slot.kind]}" for slot in cloze.slots)
    return list(load_prompt("search.cloze.complete").messages(cloze=cloze.text, evidence=evidence, slots=slots))


def complete_cloze(cloze: Cloze, item_id: str, *, gateway: Gateway, description: str = "",
                   image: bytes | None = None, local_vlm: LocalVLM | None = None, crop: Any = None,
                   max_tokens: int = 120) -> Completion:
    """Fill ``cloze`` for one candidate from its image (a VLM) or its description (the LLM)."""
    if not cloze.slots:
        return Completion(item_id=item_id, source="description", evidence=description)
    with telemetry.agent_span("cloze_complete"):
        if local_vlm is not None and crop is not None:
            prompt = _completion_messages(cloze, "the image")[-1]["content"] + \
                " Write it as VERB_1=word; COLOR_1=word."
            raw = local_vlm.ask([crop], prompt)[0]
            return Completion(item_id=item_id, fills=parse_fills(raw, cloze), source="local-vlm")
        vlm = image is not None
        messages = _completion_messages(cloze, "the attached image" if vlm else description or "(no description)")
        if vlm:
            messages[-1] = user_message(str(messages[-1]["content"]), [image])  # type: ignore[list-item]
        source: Literal["vlm", "description"] = "vlm" if vlm else "description"
        try:
            answer = gateway.structured_json(messages, completion_schema(cloze), role="vlm" if vlm else "llm",
                                             max_tokens=max_tokens)
        except StructuredOutputError as exc:
            return Completion(item_id=item_id, fills={slot.name: UNKNOWN for slot in cloze.slots}, source=source,
                              evidence=description, error=exc.errors[:200])
    fills = {slot.name: of_kind(one_word(str(answer.get(slot.name, ""))), slot.kind) for slot in cloze.slots}
    return Completion(item_id=item_id, fills=fills, source=source, evidence=description)


def of_kind(word: str, kind: SlotKind) -> str:
    """``word`` if it can fill a slot of ``kind``, else UNKNOWN: a colour slot takes a colour word, a verb slot
    no preposition, article, auxiliary or modal (a small model copies "is" or "to" from the sentence)."""
    if word == UNKNOWN:
        return word
    if kind == "COLOR":
        return word if word in COLOUR_FAMILY else UNKNOWN
    return UNKNOWN if word in FUNCTION_WORDS or word in AUXILIARIES or word in MODALS else word


def one_word(text: str) -> str:
    """The answer's first word, lowercased; ``UNKNOWN`` for none or for any spelling of unknown."""
    match = _WORD.search(text)
    if match is None or match.group().lower() in ("unknown", "none", "null", "n/a"):
        return UNKNOWN
    return match.group().lower()


def parse_fills(raw: str, cloze: Cloze) -> dict[str, str]:
    """``VERB_1=word; COLOR_1=word`` (or ``:``) from a free-text answer; a slot not found is UNKNOWN."""
    found = {f"{kind.upper()}_{number}": word for kind, number, word in
             re.findall(r"<?(VERB|COLOR)>?_(\d+)\s*[:=]\s*([A-Za-z-]+)", raw, flags=re.IGNORECASE)}
    return {slot.name: of_kind(one_word(found.get(slot.name, "")), slot.kind) for slot in cloze.slots}


# -- 3. comparison ----------------------------------------------------------------------------

class EquivalenceAnswer(BaseModel):
    equivalent: list[bool]


def stem(word: str) -> str:
    """A crude stem for deciding identical words in code (runs/running/run)."""
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 4 and word[-1] == word[-2]:
        word = word[:-1]
    return word.removesuffix("e")


def compare(cloze: Cloze, completions: Sequence[Completion], *, gateway: Gateway,
            max_tokens: int = 120) -> list[Completion]:
    """The completions with ``matches`` set; at most one LLM call for all pairs that code cannot decide."""
    decided: dict[tuple[str, str, str], bool] = {}
    undecided: list[tuple[str, str, str]] = []
    for completion in completions:
        for slot in cloze.slots:
            filled = completion.fills.get(slot.name, UNKNOWN)
            key = (slot.kind, slot.answer, filled)
            if key in decided or key in undecided:
                continue
            if filled == UNKNOWN:
                decided[key] = False
            elif slot.kind == "COLOR" and slot.answer in COLOUR_FAMILY:  # "left" is no colour, whatever a model says
                decided[key] = COLOUR_FAMILY.get(filled) == COLOUR_FAMILY[slot.answer]
            elif stem(filled) == stem(slot.answer):
                decided[key] = True
            else:
                undecided.append(key)
    if undecided:
        pairs = "\n".join(f"{number}. {kind}: '{query}' vs '{filled}'"
                          for number, (kind, query, filled) in enumerate(undecided, 1))
        schema = EquivalenceAnswer.model_json_schema()
        schema["properties"]["equivalent"].update(minItems=len(undecided), maxItems=len(undecided))
        with telemetry.agent_span("cloze_compare"):
            try:
                answer = gateway.structured_json(
                    load_prompt("search.cloze.compare").messages(pairs=pairs, count=len(undecided)), schema,
                    max_tokens=max_tokens)
                verdicts = [bool(value) for value in answer["equivalent"]]
            except StructuredOutputError:
                verdicts = [False] * len(undecided)  # only identical words count as matches then
        decided.update(zip(undecided, verdicts, strict=True))
    return [completion.model_copy(update={"matches": {
        slot.name: decided[(slot.kind, slot.answer, completion.fills.get(slot.name, UNKNOWN))]
        for slot in cloze.slots}}) for completion in completions]


# -- 4. ranking and fusion --------------------------------------------------------------------

def rank_positions(matched: Mapping[str, int]) -> dict[str, int]:
    """Dense ranks by matched slots, most first: equal counts share a rank (0 is the best)."""
    levels = sorted(set(matched.values()), reverse=True)
    return {key: levels.index(count) for key, count in matched.items()}


def fuse(s1: float, rank: int | None, *, a1: float, a2: float, beta: float) -> float:
    """``S = a1*S1 + a2*beta**n`` for a re-ranked candidate; ``a1*S1`` for one outside the top-N."""
    return a1 * s1 + (a2 * beta ** rank if rank is not None else 0.0)


# -- what a search returns: ranked gallery items, each with its cloze completion as evidence --

class RankedItem(BaseModel):
    item: GalleryItem
    s1: float = Field(description="Retrieval similarity (cosine).")
    rank: int | None = Field(default=None, description="n among the re-ranked top-N (0 best, ties share); None "
                             "outside the top-N.")
    score: float = Field(description="Fused score S = a1*S1 + a2*beta**n (a1*S1 outside the top-N).")
    completion: Completion | None = None


class SearchResult(BaseModel):
    query: str
    gallery: str
    retriever: str = Field(description="The retriever model and the gallery vector it searched.")
    cloze: Cloze | None = None
    results: list[RankedItem] = Field(default_factory=list, description="Fused order, best first.")
    retrieval: list[RankedItem] = Field(default_factory=list, description="The same items in retrieval order.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
