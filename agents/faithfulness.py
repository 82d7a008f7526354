"""Keep a model's prose true to its evidence: every sentence is checked, unsupported ones are removed.

An explanation is read by a person who trusts it, so what a model writes is filtered sentence by
sentence against the :class:`Evidence` it was given (frame numbers, times, scores and captions,
the scene's rules, the verdict the scores give). A sentence is removed, with the reason kept, when

- it is not plain English text (other scripts, control characters: "the large物体");
- it repeats an earlier sentence of the same judgment (same words, or nearly);
- it was cut off (the last sentence of a text without its full stop: the length limit hit);
- it talks about the task instead of the footage ("consistent with the verdict", "the JSON");
- it contradicts the verdict (calls a stretch the scores call normal "anomalous", or the reverse);
- it cites a time or a frame that is not in the evidence;
- it names a colour, a direction, a place in the picture (top, bottom, centre), an object class
  or an action that no caption mentions (a sentence that denies it, "no bicycle is seen", is a
  claim of absence and stays).

:func:`unsupported` is the check (the faithfulness golden suite uses it too); :func:`clean` the
filter. The vocabularies are small and explicit on purpose: a claim outside them is not checked,
so the check errs on keeping text, and the tests pin what it catches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sleuth.agents.times import cited_times, numbers

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gray")
DIRECTIONS = {"left": ("left",), "right": ("right",), "toward": ("toward", "towards"), "away": ("away",)}
# places in the picture, as the structured captioner writes them ("at the bottom left", "in the centre")
POSITIONS = {"centre": ("centre", "center", "middle"), "center": ("centre", "center", "middle"),
             "middle": ("centre", "center", "middle"), "top": ("top", "upper"), "upper": ("top", "upper"),
             "bottom": ("bottom", "lower"), "lower": ("bottom", "lower")}
# class words and the caption words that support them (the structured captioner says "person")
CLASSES: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "pedestrian", "man", "woman", "child"),
    "people": ("person", "people", "pedestrian"),
    "man": ("person", "man"), "woman": ("person", "woman"), "men": ("people", "men"), "women": ("people", "women"),
    "pedestrian": ("person", "people", "pedestrian"), "child": ("child",), "children": ("child", "children"),
    "crowd": ("crowd", "people"), "group": ("group", "people"),
    "bicycle": ("bicycle", "bike", "cyclist"), "bike": ("bicycle", "bike", "cyclist"),
    "cyclist": ("bicycle", "bike", "cyclist"), "car": ("car",), "cars": ("car",), "truck": ("truck",),
    "bus": ("bus",), "van": ("van", "car", "truck"), "vehicle": ("vehicle", "car", "truck", "bus", "van", "motorcycle"),
    "motorcycle": ("motorcycle", "motorbike"), "skateboard": ("skateboard",), "skateboarder": ("skateboard",),
    "scooter": ("scooter",), "cart": ("cart", "trolley"), "wheelchair": ("wheelchair",),
    "stroller": ("stroller", "pram"), "dog": ("dog",), "bag": ("bag", "backpack", "handbag", "suitcase"),
    "backpack": ("backpack",), "suitcase": ("suitcase", "luggage"), "luggage": ("luggage", "suitcase"),
    "umbrella": ("umbrella",), "weapon": ("weapon", "gun", "knife"), "gun": ("gun",), "knife": ("knife",),
}
ACTIONS: dict[str, tuple[str, ...]] = {
    "walking": ("walk",), "walks": ("walk",), "running": ("run", "fast"), "runs": ("run", "fast"),
    "standing": ("standing", "not moving", "stand"), "stands": ("standing", "not moving", "stand"),
    "sitting": ("sit",), "lying": ("lying", "lie"), "falling": ("fall",), "falls": ("fall",), "fell": ("fall",),
    "fighting": ("fight",), "jumping": ("jump",), "throwing": ("throw",), "climbing": ("climb",),
    "riding": ("rid", "cycl", "bicycle", "bike"), "cycling": ("cycl", "bicycle", "bike"),
    "skateboarding": ("skateboard",), "carrying": ("carry",), "pushing": ("push",), "dancing": ("danc",),
    "loitering": ("loiter",), "chasing": ("chas",), "driving": ("driv", "car", "vehicle"),
}
VOCABULARY = {**CLASSES, **ACTIONS}  # every object and action word a claim is checked for
ANOMALY_WORDS = re.compile(r"\b(anomal\w*|abnormal\w*|unusual|suspicious\w*|dangerous|out of place|alarming|"
                           r"irregular|strange|odd)\b")
NORMAL_CLAIM = re.compile(r"\b(nothing (is |was |seems )?(unusual|anomalous|abnormal|suspicious)|"
                          r"no (anomal\w*|unusual|abnormal|suspicious)\w*|(is|are|was|were|looks|seems|appears) "
                          r"(entirely |completely |perfectly )?normal)\b")
NEGATION = re.compile(r"\b(no|not|none|nothing|neither|nor|never|without|nobody|no one|isn't|aren't|wasn't|"
                      r"doesn't|don't)\b|n't\b")
META = re.compile(r"\b(verdict|contradict\w*|the prompt|instructions?|json|the task)\b")
PLAIN = re.compile(r"^[A-Za-z0-9 ,.;:'()%/+&?!\-]*$")  # the prose the grammar allows (see agents/explain.py)
FRAMES = re.compile(r"\bframes?\s+((?:\d+(?:\s*(?:,|and|to|-)\s*)?)+)")


@dataclass(frozen=True)
class Evidence:
    """What a judgment may speak about."""

    frames: Sequence[int]
    times: Sequence[float]  # seconds, one per frame
    captions: Sequence[str] = ()
    rules: Sequence[str] = ()
    anomalous: bool = False  # the verdict the scores give
    extra_times: Sequence[float] = ()  # event bounds, peaks: times the evidence states besides the frames'
    extra_frames: Sequence[int] = ()
    text: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", " ".join(caption.lower() for caption in self.captions))


def sentences(text: str) -> list[str]:
    """Split prose into sentences (decimals such as 45.3 s stay whole)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(])", text.strip())
    return [part.strip() for part in parts if part.strip()]


def _key(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", sentence.lower()))


def _near_repeat(words: set[str], earlier: Iterable[set[str]]) -> bool:
    for other in earlier:
        union = words | other
        if union and len(words & other) / len(union) >= 0.8:
            return True
    return False


_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


class RepeatStop:
    """Streamed prose released a sentence (or line) at a time, stopping at the first one that repeats
    an earlier one, exactly or nearly (a small model looping on one sentence until its token limit).

    :meth:`feed` takes each streamed piece and returns what may be shown now; :meth:`finish`
    returns the rest; :attr:`text` is everything released; :attr:`stopped` says a repeat ended it.

    ``known`` is text the reader already sees above (a tool's lead): a sentence that only restates
    it, with two or more numbers all of which it gives ("a mean of 0.38 and a maximum of 0.77 at
    frame 153"), is left out; the stream goes on. A sentence with one number ("the robbery starts at
    43.3 s") is kept: it may be the answer drawn from the numbers.
    """

    def __init__(self, known: str = "") -> None:
        self.buffer = ""
        self.text = ""
        self.stopped = False
        self._seen: list[set[str]] = []
        self._keys: set[str] = set()
        self._known = set(numbers(known))

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buffer += piece
        released = ""
        while not self.stopped and (boundary := _BOUNDARY.search(self.buffer)):
            sentence, separator = self.buffer[:boundary.start()], boundary.group()
            self.buffer = self.buffer[boundary.end():]
            released += self._release(sentence, separator)
        return released

    def finish(self) -> str:
        rest, self.buffer = self.buffer, ""
        return "" if self.stopped else self._release(rest, "")

    def _release(self, sentence: str, separator: str) -> str:
        given = numbers(sentence)
        if self._known and len(given) >= 2 and set(given) <= self._known:
            return ""  # says again what the reader sees above
        key = _key(sentence)
        words = set(key.split())
        if len(words) >= 2 and (key in self._keys or (len(words) >= 4 and _near_repeat(words, self._seen))):
            self.stopped = True
            self.text = self.text.rstrip()
            return ""
        if key:
            self._keys.add(key)
            self._seen.append(words)
        self.text += sentence + separator
        return sentence + separator


def _times_in(sentence: str) -> list[float]:
    return [value for _, value in cited_times(sentence)]


def _frames_in(sentence: str) -> list[int]:
    return [int(number) for group in FRAMES.findall(sentence.lower()) for number in re.findall(r"\d+", group)]


def _negated(lowered: str, word: str) -> bool:
    """True when ``word`` comes after a negation in its clause ("no bicycle", "nobody is running")."""
    for clause in re.split(r"[,;:]|\bbut\b|\bwhile\b|\bwhereas\b", lowered):
        at = clause.find(word)
        if at >= 0 and NEGATION.search(clause[:at]):
            return True
    return False


def unsupported(sentence: str, evidence: Evidence) -> str | None:
    """Why ``sentence`` is not supported by ``evidence``, or None when it is."""
    if not PLAIN.match(sentence):
        return "not plain English text"
    lowered = sentence.lower()
    if META.search(lowered):
        return "talks about the task, not the footage"
    called = ANOMALY_WORDS.search(lowered)
    if not evidence.anomalous and called and not _negated(lowered, called.group(0)):
        return "calls anomalous what the scores call normal"
    if evidence.anomalous and NORMAL_CLAIM.search(lowered):
        return "calls normal what the scores call anomalous"
    times = list(evidence.times) + list(evidence.extra_times)
    for claimed in _times_in(sentence):
        if not any(abs(claimed - known) <= 0.5 for known in times) and not (
                times and min(times) - 0.5 <= claimed <= max(times) + 0.5):
            return f"cites {claimed:g} s, outside the frames it was shown"
    known_frames = set(evidence.frames) | set(evidence.extra_frames)
    for frame in _frames_in(sentence):
        if frame not in known_frames and not (known_frames and min(known_frames) <= frame <= max(known_frames)):
            return f"cites frame {frame}, which it was not shown"
    words = set(re.findall(r"[a-z]+", lowered))
    for colour in COLOURS:
        if colour in words and colour not in evidence.text and not (colour == "gray" and "grey" in evidence.text):
            return f"names the colour {colour}, which no caption mentions"
    for direction, forms in DIRECTIONS.items():
        if words & set(forms) and not any(form in evidence.text for form in forms) and not _negated(lowered, direction):
            return f"names the direction '{direction}', which no caption mentions"
    for position, forms in POSITIONS.items():
        if position in words and not any(form in evidence.text for form in forms) and not _negated(lowered, position):
            return f"places it at the {position}, which no caption says"
    for word, support in VOCABULARY.items():
        if word in words and not any(stem in evidence.text for stem in support) and not _negated(lowered, word):
            kind = "action" if word in ACTIONS else "object"
            return f"names the {kind} '{word}', which no caption mentions"
    return None


def clean(texts: Sequence[str], evidence: Evidence) -> tuple[list[str], list[str]]:
    """Each text with its unsupported or repeated sentences removed, and the removals with reasons.

    Sentences are compared across all ``texts`` (the fields of one judgment), so a sentence
    repeated in a second field is removed there.
    """
    seen: list[set[str]] = []
    keys: set[str] = set()
    kept_texts: list[str] = []
    removed: list[str] = []
    for text in texts:
        kept = []
        parts = sentences(text)
        for number, sentence in enumerate(parts):
            key = _key(sentence)
            words = set(key.split())
            reason = ("repeats an earlier sentence" if key in keys or _near_repeat(words, seen)
                      else "cut off" if number == len(parts) - 1 and not sentence.endswith((".", "!", "?", ")"))
                      else unsupported(sentence, evidence))
            if reason:
                removed.append(f"{sentence} [{reason}]")
                continue
            keys.add(key)
            seen.append(words)
            kept.append(sentence)
        kept_texts.append(" ".join(kept))
    return kept_texts, removed
