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
    one_by_one = np.vstack([embedder([text]) for text in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: TextEmbedder) -> None:
    similarity = embedder.similarity(["a man is riding a bike"],
                                     ["a person cycles on a bicycle", "the sky is cloudy today"])
    assert similarity[0, 0] > similarity[0, 1] + 0.3


def test_no_texts_gives_an_empty_matrix(embedder: TextEmbedder) -> None:
    assert embedder([]).shape == (0, 384)
