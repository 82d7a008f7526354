"""Caption text tools: evidence pieces and HyCoVAD caption refinement.

Captions from VLMs such as CogVLM list every person of a crowded frame in one long sentence
("the first person is walking, the second person is riding a bicycle, ..."). Compared whole, the
one anomalous clause drowns in the normal ones, so Sleuth judges *evidence pieces*: clauses
split at sentence ends, commas and coordinating words, with the ordinal subject ("the third
person") normalised to "person" and filler ("appears to be") removed. Pieces repeat across
frames, so each distinct piece is judged once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sleuth import telemetry
from sleuth.tools.embedder import TextEmbedder

_ORDINAL = (r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
            r"thirteenth|fourteenth|fifteenth|last|other|another|remaining|next|same")
_SUBJECT = re.compile(rf"\b(?:(?:the|a|one|an)\s+)?(?:(?:{_ORDINAL})\s+)?"
                      r"(?:person|people|individual|individuals|man|woman|men|women|pedestrian|pedestrians)\b", re.I)
_FILLER = re.compile(r"\b(?:appears to be|appear to be|seems to be|seem to be|is also|are also|also|possibly|"
                     r"likely|probably|who is|that is|seemingly)\b", re.I)
_SPLIT = re.compile(r",\s*(?:and\s+|while\s+|but\s+)?|;\s*|\s+and\s+(?=(?:the|a|one|another|two|three|some)\b)|"
                    r"\s+while\s+|\s+whereas\s+")
_LEAD = re.compile(r"^(?:(?:then|next to (?:them|him|her|it)|followed by|further|finally|and|also|lastly)\s*,?\s*)+"
                   r"(?:(?:there's|there is|there are|is|are)\s+)?")
_STRUCTURAL = re.compile(r"^(?:there (?:are|is) (?:\d+|\w+) (?:people|persons|individuals|pedestrians)|"
                         r"starting from|other than|apart from|finally|and so on|so on|overall|in the image$|"
                         r"in this image|from left to right|step by step)")


def evidence_pieces(caption: str) -> list[str]:
    """The normalised clauses of one caption (empty for an empty caption)."""
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", caption.strip()):
        for part in _SPLIT.split(sentence):
            piece = part.strip(" .;:!?\"'").lower()
            if not piece or _STRUCTURAL.match(piece):
                continue
            piece = _LEAD.sub("", piece)
            piece = re.sub(r"^(?:there's|there is|there are)\s+(?=person\b|people\b|a |an |the )", "", piece)
            piece = _SUBJECT.sub("person", piece)
            piece = _FILLER.sub("is", piece)
            piece = re.sub(r"\b(is|are) (is|are)\b", r"\1", piece)
            piece = re.sub(r"\s+", " ", piece).strip()
            if len(piece) > 2 and piece not in pieces:
                pieces.append(piece)
    return pieces


def sentence_chunks(caption: str, size: int = 2, stride: int = 1) -> list[str]:
    """Overlapping groups of ``size`` sentences (a long caption becomes several chunks)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", caption.strip()) if s.strip()]
    if len(sentences) <= size:
        return [" ".join(sentences)] if sentences else [""]
    return [" ".join(sentences[i:i + size]) for i in range(0, len(sentences) - size + 1, stride)]


def caption_vectors(captions: Sequence[str], embedder: TextEmbedder) -> np.ndarray:
    """One unit vector per caption: the normalised mean of its sentence-chunk embeddings."""
    unique = sorted(set(captions))
    if not unique:
        return np.zeros((0, embedder.dimension if hasattr(embedder, "dimension") else 0), dtype=np.float32)
    chunks: list[str] = []
    owner: list[int] = []
    for index, caption in enumerate(unique):
        for chunk in sentence_chunks(caption):
            chunks.append(chunk)
            owner.append(index)
    vectors = embedder(chunks)
    pooled = np.zeros((len(unique), vectors.shape[1]), dtype=np.float32)
    np.add.at(pooled, np.asarray(owner), vectors)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
    position = {caption: index for index, caption in enumerate(unique)}
    return pooled[[position[caption] for caption in captions]]


def refine_captions(captions: Sequence[str], embedder: TextEmbedder, window: int = 10) -> list[str]:
    """HyCoVAD refinement: each frame takes the caption of its temporal window (``window`` frames
    centred on it) that agrees best with the window's other captions in embedding space."""
    if window <= 1 or len(captions) <= 1:
        return list(captions)
    with telemetry.tool_span("caption_refiner") as span:
        span.set_attribute("sleuth.frames", len(captions))
        vectors = caption_vectors(captions, embedder)
        half = window // 2
        refined = []
        for index in range(len(captions)):
            lo, hi = max(0, index - half), min(len(captions), index + half + 1)
            block = vectors[lo:hi] @ vectors[lo:hi].T  # the window's similarities only: memory linear in length
            agreement = (block.sum(axis=1) - 1.0) / max(1, hi - lo - 1)
            refined.append(captions[lo + int(np.argmax(agreement))])
        return refined
