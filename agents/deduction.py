"""Deduction agents: judge evidence against rules (AnomalyRuler's deduction stage).

- :class:`EvidenceJudge` scores one evidence piece (a caption clause) with one LLM call: a
  multiple choice among the rules nearest to the piece, anomaly and normal rules interleaved. The
  probability mass the model puts on the anomaly options (from the answer token's
  log-probabilities) is a continuous score for ROC curves, not only a 0/1 decision.
- :func:`deduce_frame` judges a whole caption with a structured answer: decision, broken rule
  numbers and a one-sentence reason, and the verdict's probability from the log-probabilities of
  its first token; the detect graph asks it once per event (HyCoVAD's validation).
- :func:`cheap_score` is the LLM-free signal the gate uses: how much closer the piece is to the
  nearest anomaly rule than to the nearest normal rule, in embedding space.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.errors import SleuthError
from sleuth.llm.gateway import Gateway
from sleuth.prompts import load_prompt

LETTERS = "ABCDEFGH"
VERDICTS = ("anomaly", "normal")
MARGIN_OFFSET = 0.10  # a piece must be this much closer to an anomaly rule than to a normal rule to score 0.5


@dataclass(frozen=True)
class RuleIndex:
    """A rule set with its rule embeddings, for nearest-rule lookups."""

    rules: RuleSet
    anomaly_vectors: np.ndarray
    normal_vectors: np.ndarray

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities of each vector to every anomaly rule and every normal rule."""
        return vectors @ self.anomaly_vectors.T, vectors @ self.normal_vectors.T


def cheap_score(anomaly_similarity: float, normal_similarity: float) -> float:
    """The margin between the nearest anomaly and nearest normal rule, shifted to 0.5 at
    ``MARGIN_OFFSET`` and clipped to [0, 1]. Linear, because a squashing function flattens the
    differences between strong matches that temporal smoothing needs (measured on Ped2: 97.8
    frame AUC linear against 97.2 with a logistic of scale 0.08)."""
    margin = anomaly_similarity - normal_similarity
    return min(1.0, max(0.0, 0.5 + margin - MARGIN_OFFSET))


def options_for(anomaly_similarity: np.ndarray, normal_similarity: np.ndarray, rules: RuleSet,
                per_kind: int) -> list[Rule]:
    """The ``per_kind`` nearest anomaly and normal rules, interleaved (anomaly first)."""
    anomaly = [rules.anomaly[i] for i in np.argsort(-anomaly_similarity)[:per_kind] if i < len(rules.anomaly)]
    normal = [rules.normal[i] for i in np.argsort(-normal_similarity)[:per_kind] if i < len(rules.normal)]
    options: list[Rule] = []
    for pair in zip(anomaly, normal, strict=False):
        options.extend(pair)
    options.extend(anomaly[len(normal):] + normal[len(anomaly):])
    return options


class Judgment(BaseModel):
    piece: str
    score: float = Field(ge=0, le=1)
    rule: str | None = Field(default=None, description="The option the model chose.")
    source: str = "llm"


class EvidenceJudge:
    """One LLM call per evidence piece; ``judge`` never raises for a bad answer (it falls back)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.prompt = load_prompt("deduction.evidence")

    def judge(self, piece: str, options: list[Rule], fallback: float) -> Judgment:
        rendered = "\n".join(f"{letter}) {rule.text}" for letter, rule in zip(LETTERS, options, strict=False))
        with telemetry.agent_span("deduce_evidence"):
            try:
                result = self.gateway.chat(self.prompt.messages(options=rendered, observation=piece),
                                           max_tokens=1, top_logprobs=10)
            except SleuthError:
                return Judgment(piece=piece, score=fallback, source="fallback")
        top = (result.logprobs or [{}])[0].get("top_logprobs", {})
        mass = {letter: 0.0 for letter in LETTERS[:len(options)]}
        for token, logprob in top.items():
            letter = token.strip().rstrip(")").upper()
            if letter in mass:
                mass[letter] += math.exp(logprob)
        total = sum(mass.values())
        if total < 0.05:  # the model answered something else entirely
            return Judgment(piece=piece, score=fallback, source="fallback")
        anomaly = sum(p for letter, p in mass.items() if options[LETTERS.index(letter)].kind == "anomaly")
        chosen = options[LETTERS.index(max(mass, key=lambda k: mass[k]))]
        return Judgment(piece=piece, score=anomaly / total, rule=chosen.label())


class FrameDeduction(BaseModel):
    """Structured answer of the ``deduction.frame`` prompt. The verdict comes first and is a word, not
    a JSON boolean: the model's probability for its first token ("an" against "normal") is a usable
    confidence, where the packaged 0.5B barely considers ``true`` and ``false`` at that position."""

    verdict: Literal["anomaly", "normal"]
    broken_rules: list[int] = Field(default_factory=list, max_length=5)
    reason: str = Field(max_length=300)

    @property
    def anomaly(self) -> bool:
        return self.verdict == "anomaly"


@dataclass(frozen=True)
class Deduction:
    """A full-caption deduction: the model's answer, the anomaly rules it named and how sure it was."""

    answer: FrameDeduction
    named: list[str]
    probability: float  # P(anomaly) from the verdict token's log-probabilities (the 0/1 answer without them)


def anomaly_probability(logprobs: list[dict[str, Any]] | None) -> float | None:
    """P("anomaly") against P("normal") at the verdict value's first token, over the tokens the
    answer's grammar allows there (the start of either word); None without log-probabilities."""
    text = ""
    for item in logprobs or []:
        token = str(item.get("token", ""))
        opened = text.endswith('"') and text.rstrip('"').rstrip().endswith(":")  # the value's quote is out
        if '"verdict"' in text and _verdict_start(token, opened) is not None:
            top = {**(item.get("top_logprobs") or {}), token: item.get("logprob", 0.0)}
            mass = dict.fromkeys(VERDICTS, 0.0)
            for choice, value in top.items():
                word = _verdict_start(choice, opened)
                if word is not None:
                    mass[word] += math.exp(value)
            total = sum(mass.values())
            return mass["anomaly"] / total if total > 0 else None
        text += token
        if "broken_rules" in text:
            break
    return None


def _verdict_start(token: str, opened: bool) -> str | None:
    """The verdict word ``token`` can start where the grammar allows it: right after the value's
    opening quote, or, before it, a token that brings the quote with it."""
    if not opened:
        quoted = re.match(r'^\s*"(.+)$', token)
        if quoted is None:
            return None
        token = quoted.group(1)
    for word in VERDICTS:
        if token and (word.startswith(token) or token.startswith(word + '"')):
            return word
    return None


def deduce_frame(caption: str, evidence: str, rules: RuleSet, gateway: Gateway) -> Deduction:
    """Judge one caption against ``rules``: the answer, the texts of the anomaly rules it names, and
    the probability of its anomaly decision (HyCoVAD's validation reads it)."""
    prompt = load_prompt("deduction.frame")
    anomaly = "\n".join(f"{i}. {rule.text}" for i, rule in enumerate(rules.anomaly, 1))
    normal = "\n".join(f"- {rule.text}" for rule in rules.normal)
    with telemetry.agent_span("deduce_frame"):
        answer, logprobs = gateway.structured_logprobs(
            prompt.messages(anomaly_rules=anomaly, normal_rules=normal, caption=caption, evidence=evidence),
            FrameDeduction, top_logprobs=20, max_tokens=200)
    named = [rules.anomaly[i - 1].text for i in answer.broken_rules if 1 <= i <= len(rules.anomaly)]
    probability = anomaly_probability(logprobs)
    if probability is None or (probability >= 0.5) != answer.anomaly:  # no usable log-probabilities
        return Deduction(answer, named, 1.0 if answer.anomaly else 0.0)
    return Deduction(answer, named, probability)
