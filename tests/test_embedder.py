"""The packaged MiniLM embedder, loaded offline from site-packages (real model)."""

from __future__ import annotations

import numpy as np
import pytest
from sleuth.config import EmbedderRole
from sleuth.tools.embedder import TextEmbedder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder(EmbedderRole(batch_size=2))


def test_vectors_are_normalised_and_batched(embedder: TextEmbedder) -> None:
    texts = ["a person walks on the path", "a man rides a bicycle", "a car drives on the walkway",
             "people stroll across the plaza", "a skateboarder passes"]
    vectors = embedder(texts)  # batch_size 2: three batches
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    uncached = TextEmbedder(EmbedderRole(batch_size=2), cache_texts=0)
    uncached._model = embedder._load()
    one_by_one = np.vstack([uncached([text]) for text in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-5) and len(uncached._cache) == 0


def test_a_text_seen_before_is_not_embedded_again(embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules and the overlapping caption windows of a live watch are embedded once, with the same vectors."""
    model = embedder._load()
    encoded: list[list[str]] = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **kw: encoded.append(list(texts)) or encode(texts, **kw))
    first = embedder(["two people walk", "a person rides a bicycle", "two people walk"])
    again = embedder(["a person rides a bicycle", "a car on the walkway", "two people walk"])
    assert encoded == [["two people walk", "a person rides a bicycle"], ["a car on the walkway"]]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    small = TextEmbedder(EmbedderRole(), cache_texts=2)
    small._model = model
    small(["a", "b", "c"])
    assert list(small._cache) == ["b", "c"]  # the least recently used goes first


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: TextEmbedder) -> None:
    similarity = embedder.similarity(["a man is riding a bike"],
                                     ["a person cycles on a bicycle", "the sky is cloudy today"])
    assert similarity[0, 0] > similarity[0, 1] + 0.3


def test_no_texts_gives_an_empty_matrix(embedder: TextEmbedder) -> None:
    assert embedder([]).shape == (0, 384)
