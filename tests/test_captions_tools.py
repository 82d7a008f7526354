"""Caption text tools: evidence pieces of crowded captions and HyCoVAD caption refinement.

No model loads here: refinement runs on a deterministic hashed bag-of-words embedder.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sleuth.tools.captions import caption_vectors, evidence_pieces, refine_captions, sentence_chunks

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomalyruler"

CROWDED = ("There are 12 people in the image. Starting from the left, the first person appears to be walking, "
           "the second person is also walking, the third person is walking with a backpack, the fourth person "
           "seems to be walking, the fifth person is riding a bicycle, and the sixth person is walking. "
           "Other than people, there are trees, a building, and a lamp post in the image.")


class HashedBagOfWords:
    """A tiny deterministic embedder: words hashed (crc32) into a unit vector; records every call."""

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)


# --- evidence_pieces -------------------------------------------------------------------------


def test_crowded_caption_keeps_the_anomalous_clause_as_its_own_piece() -> None:
    pieces = evidence_pieces(CROWDED)
    riding = [piece for piece in pieces if "riding a bicycle" in piece]
    assert riding == ["person is riding a bicycle"]
    # the one anomalous clause is not glued to the walking clauses around it
    assert not any("walking" in piece for piece in riding)


def test_ordinal_subjects_are_normalised_to_person() -> None:
    pieces = evidence_pieces(CROWDED)
    assert "person is walking" in pieces
    assert "person is walking with a backpack" in pieces
    ordinals = re.compile(r"\b(first|second|third|fourth|fifth|sixth)\b")
    assert not any(ordinals.search(piece) for piece in pieces), pieces


def test_filler_words_are_removed() -> None:
    pieces = evidence_pieces("The first person appears to be walking, the second person seems to be running.")
    assert pieces == ["person is walking", "person is running"]


def test_structural_clauses_are_dropped() -> None:
    pieces = evidence_pieces(CROWDED)
    joined = " | ".join(pieces)
    assert "12 people" not in joined
    assert "starting from" not in joined
    assert "other than" not in joined
    assert all(piece == piece.lower() for piece in pieces)


def test_pieces_are_unique() -> None:
    pieces = evidence_pieces(CROWDED)
    assert len(pieces) == len(set(pieces))
    # six people, four of them just "walking": one piece for all of them
    assert pieces.count("person is walking") == 1


@pytest.mark.parametrize("caption", ["", "   ", "\n"])
def test_empty_caption_has_no_pieces(caption: str) -> None:
    assert evidence_pieces(caption) == []


def test_real_ped2_captions_split_into_walking_and_running_pieces() -> None:
    lines = (REAL / "ped2" / "test_frame_description" / "test_04.txt").read_text().splitlines()
    first = evidence_pieces(lines[0])
    assert "person is running" in first and "person is walking" in first
    assert not any("10 people" in piece or "other than" in piece for piece in first)
    riding = next(line for line in lines if "riding a bicycle" in line)
    assert any("riding a bicycle" in piece and "walking" not in piece for piece in evidence_pieces(riding))


# --- sentence_chunks -------------------------------------------------------------------------


def test_sentence_chunks_overlap_by_stride() -> None:
    assert sentence_chunks("One. Two. Three. Four.") == ["One. Two.", "Two. Three.", "Three. Four."]
    assert sentence_chunks("One. Two. Three. Four.", size=2, stride=2) == ["One. Two.", "Three. Four."]
    assert sentence_chunks("One. Two. Three. Four.", size=3) == ["One. Two. Three.", "Two. Three. Four."]


def test_short_captions_are_one_chunk() -> None:
    assert sentence_chunks("A person walks. A tree stands.") == ["A person walks. A tree stands."]
    assert sentence_chunks("  A person walks.  ") == ["A person walks."]
    assert sentence_chunks("") == [""]


# --- caption_vectors -------------------------------------------------------------------------


def test_caption_vectors_are_unit_norm_and_identical_for_identical_captions() -> None:
    embedder = HashedBagOfWords()
    captions = ["A person walks. A tree stands. A bag lies.", "A person rides a bicycle.",
                "A person walks. A tree stands. A bag lies."]
    vectors = caption_vectors(captions, embedder)
    assert vectors.shape == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])


def test_caption_vectors_embed_each_distinct_caption_once() -> None:
    embedder = HashedBagOfWords()
    caption_vectors(["A. B. C.", "D.", "A. B. C.", "D.", "D."], embedder)
    embedded = [text for call in embedder.calls for text in call]
    assert sorted(embedded) == sorted(sentence_chunks("A. B. C.") + sentence_chunks("D."))


def test_caption_vectors_of_no_captions_is_empty() -> None:
    assert caption_vectors([], HashedBagOfWords()).shape == (0, 64)


# --- refine_captions -------------------------------------------------------------------------

WALK = "A person is walking on the path. Other than people there are trees."
OUTLIER = "A man rides a red bicycle quickly near a truck."


@pytest.mark.parametrize("window", [0, 1])
def test_window_one_is_the_identity(window: int) -> None:
    captions = [WALK, OUTLIER, WALK, "Something else entirely."]
    embedder = HashedBagOfWords()
    assert refine_captions(captions, embedder, window=window) == captions
    assert embedder.calls == []  # nothing embedded


def test_single_caption_is_unchanged() -> None:
    assert refine_captions([OUTLIER], HashedBagOfWords(), window=10) == [OUTLIER]


def test_isolated_outlier_is_replaced_by_the_majority_caption() -> None:
    captions = [WALK] * 6 + [OUTLIER] + [WALK] * 6
    refined = refine_captions(captions, HashedBagOfWords(), window=5)
    assert refined == [WALK] * 13


def test_refining_an_hour_of_captions_holds_only_windows_not_every_pair() -> None:
    """An hour at 10 frames/s is 36,000 captions: all pairs of them would be 5 GB of similarities."""
    import tracemalloc

    captions = [f"{WALK} Frame {k % 997}." for k in range(6000)]  # every pair: 144 MB
    embedder = HashedBagOfWords()
    tracemalloc.start()
    try:
        refined = refine_captions(captions, embedder, window=11)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(refined) == len(captions)
    assert peak < 40e6  # the vectors and one window at a time


def test_long_run_of_a_different_caption_survives_refinement() -> None:
    captions = [WALK] * 10 + [OUTLIER] * 10 + [WALK] * 10
    refined = refine_captions(captions, HashedBagOfWords(), window=5)
    assert len(refined) == len(captions)
    assert refined[12:18] == [OUTLIER] * 6
    assert refined[:8] == [WALK] * 8 and refined[22:] == [WALK] * 8


def test_refinement_is_local_to_the_window() -> None:
    other = "Cars drive on a road at night."
    captions = [other] * 3 + [WALK] * 20
    refined = refine_captions(captions, HashedBagOfWords(), window=4)
    # the video's majority caption does not overwrite a short run at the start: only the window counts
    assert refined[:3] == [other] * 3
    assert refined[3:] == [WALK] * 20
