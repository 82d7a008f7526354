"""The retriever tool: tiny random CLIP/SigLIP models through the real transformers loading path,
the caption-text default, the in-process toolset, the doctor check and the Serve replica class.

The Retriever deployment on a running Serve app is in ``test_serve_real.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sleuth import telemetry
from sleuth.config import Settings
from sleuth.errors import ModelFileError
from sleuth.tools.retriever import CaptionTextRetriever, ClipRetriever, build_retriever
from sleuth.tools.toolset import InProcessTools, open_tools

from tests.conftest import HashEmbedder
from tests.tiny_models import build_tiny_clip, build_tiny_siglip, random_images

DIMENSIONS = {"clip": 8, "siglip": 16}  # CLIP's projection_dim; SigLIP's hidden size (no projection)
QUERIES = ["a man walks", "a woman in a red bag rides a bicycle near the street", "child", "two people stand"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retrievers")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip")}


@pytest.fixture(params=["clip", "siglip"])
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def _unit(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


def test_tiny_models_are_small_offline_folders(tiny_models: dict[str, Path]) -> None:
    for folder in tiny_models.values():
        assert sum(path.stat().st_size for path in folder.iterdir()) < 500_000
        assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= {
            path.name for path in folder.iterdir()}


def test_configured_model_embeds_images_and_texts_to_unit_vectors(tiny_models: dict[str, Path], family: str) -> None:
    settings = Settings(retriever={"model": str(tiny_models[family]), "batch_size": 3, "device": "cpu"})
    retriever = build_retriever(settings)
    assert isinstance(retriever, ClipRetriever)
    assert retriever.vector == "image" and retriever.name == str(tiny_models[family])
    assert retriever.batch_size == 3 and retriever.device == "cpu"

    images = random_images(5, height=40, width=24)  # tall person-like crops
    items = retriever.embed_items(images, [f"caption {i}" for i in range(5)])
    queries = retriever.embed_queries(QUERIES)
    dimension = DIMENSIONS[family]
    assert items.shape == (5, dimension) and queries.shape == (len(QUERIES), dimension)
    assert items.dtype == np.float32 and queries.dtype == np.float32
    assert _unit(items) and _unit(queries)
    assert retriever.dimension == dimension
    # the model really sees its input: different crops and texts give different vectors
    assert np.ptp(items @ items.T) > 1e-3 and np.ptp(queries @ queries.T) > 1e-3
    assert retriever.embed_items([], []).shape == (0, dimension)
    assert retriever.embed_queries([]).shape == (0, dimension)
    # images only is enough for an image retriever; grey and RGBA crops are accepted
    grey = images[0][:, :, 0]
    alpha = np.dstack([images[0], np.full(images[0].shape[:2], 255, np.uint8)])
    assert np.allclose(retriever.embed_items([images[0], alpha], []), items[[0, 0]], atol=1e-5)
    assert retriever.embed_items([grey], []).shape == (1, dimension)


def test_batches_give_the_same_vectors_as_one_by_one(tiny_models: dict[str, Path], family: str) -> None:
    batched = ClipRetriever(str(tiny_models[family]), batch_size=3, device="cpu")
    single = ClipRetriever(str(tiny_models[family]), batch_size=1, device="cpu")
    images = random_images(7, height=30, width=20, seed=1)
    # texts of different lengths: CLIP pads a batch to its longest text, SigLIP to max_length
    assert np.allclose(batched.embed_queries(QUERIES), np.vstack([single.embed_queries([q]) for q in QUERIES]),
                       atol=1e-5)
    assert np.allclose(batched.embed_items(images, []),
                       np.vstack([single.embed_items([image], []) for image in images]), atol=1e-5)


def test_each_call_is_a_tool_span() -> None:
    exporter = InMemorySpanExporter()
    telemetry.add_span_exporter(exporter)
    retriever = CaptionTextRetriever(HashEmbedder())
    retriever.embed_queries(["a person runs"])
    retriever.embed_items([], ["a person walks", "a car"])
    spans = {span.name: span for span in exporter.get_finished_spans()}
    exporter.shutdown()
    assert spans["execute_tool retrieve_embed_items"].attributes["sleuth.batch.size"] == 2
    assert spans["execute_tool retrieve_embed_queries"].attributes["sleuth.retriever.model"] == (
        "all-MiniLM-L6-v2 (captions)")


def test_a_missing_model_is_a_one_line_error_that_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as error:
        ClipRetriever(str(tmp_path / "no-such-clip")).embed_queries(["a person"])
    assert str(error.value) == (f"retriever model folder {tmp_path / 'no-such-clip'} does not exist: set "
                                "retriever.model to a local CLIP/SigLIP model folder, or unset it to retrieve "
                                "by captions")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match=r"cannot load retriever '.*empty': .*set retriever.model") as error:
        build_retriever(Settings(retriever={"model": str(empty)})).embed_items(random_images(1), ["x"])
    assert "\n" not in str(error.value)


def test_caption_text_retriever_embeds_captions_not_images() -> None:
    embedder = HashEmbedder()
    retriever = build_retriever(Settings(), embedder)
    assert isinstance(retriever, CaptionTextRetriever) and retriever.embedder is embedder
    assert retriever.vector == "caption" and retriever.name == "all-MiniLM-L6-v2 (captions)"
    captions = ["a man in a red coat rides a bicycle", "a white car on the street", "a dog on the lawn"]
    items = retriever.embed_items(random_images(3), captions)
    assert np.allclose(items, embedder(captions))
    assert np.allclose(retriever.embed_items([], captions), items)  # the images play no part
    query = retriever.embed_queries(["man with a bicycle"])
    assert query.shape == (1, 64) and _unit(query) and _unit(items)
    assert int(np.argmax(items @ query[0])) == 0
    with pytest.raises(ValueError, match="embeds item captions: got images only"):
        retriever.embed_items(random_images(2), [])
    with pytest.raises(ValueError, match="2 images but 3 captions"):
        retriever.embed_items(random_images(2), captions)


def test_the_default_retriever_embeds_with_the_configured_text_embedder() -> None:
    from sleuth.tools.embedder import TextEmbedder

    retriever = build_retriever(Settings(embedder={"model": "/models/minilm", "batch_size": 8}))
    assert isinstance(retriever, CaptionTextRetriever) and isinstance(retriever.embedder, TextEmbedder)
    assert retriever.embedder.config.batch_size == 8 and retriever.name == "/models/minilm (captions)"


def test_inprocess_retriever_is_built_once_with_the_toolsets_embedder(tiny_models: dict[str, Path]) -> None:
    embedder = HashEmbedder()
    tools = open_tools(Settings(), embedder=embedder)
    assert isinstance(tools, InProcessTools)
    retriever = tools.retriever
    assert retriever is tools.retriever and isinstance(retriever, CaptionTextRetriever)
    retriever.embed_queries(["a person"])
    assert embedder.calls == 1  # the toolset's embedder, not a second model

    clip = open_tools(Settings(retriever={"model": str(tiny_models["clip"])}), embedder=embedder).retriever
    assert isinstance(clip, ClipRetriever) and clip.name == str(tiny_models["clip"])
    given = CaptionTextRetriever(HashEmbedder(), name="given")
    assert open_tools(Settings(), retriever=given).retriever is given


def test_doctor_loads_the_configured_retriever(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from sleuth.doctor import check_retriever

    (check,) = check_retriever(Settings(retriever={"model": str(tiny_models["siglip"]), "device": "cpu"}))
    assert check.status == "ok" and "dimension 16" in check.detail and "on cpu" in check.detail
    (check,) = check_retriever(Settings(retriever={"model": str(tmp_path / "gone")}))
    assert check.status == "fail" and "does not exist: set retriever.model" in check.detail
    (check,) = check_retriever(Settings())
    assert check.status == "info" and "caption text" in check.detail


def test_serve_replica_merges_a_batch_of_calls_like_the_in_process_retriever(tiny_models: dict[str, Path]) -> None:
    """The replica's batch handlers (Serve's @serve.batch runs them only inside a replica: called unwrapped)."""
    from sleuth.serve import deployments

    model = str(tiny_models["clip"])
    replica = deployments.Retriever.func_or_class({"settings": {"retriever": {"model": model}}})
    replica.check_health()
    assert replica.info() == {"name": model, "vector": "image", "dimension": 8}
    local = ClipRetriever(model)
    images = random_images(4)
    cls = deployments.Retriever.func_or_class
    q1, q2 = asyncio.run(cls._queries_batch.__wrapped__(replica, [QUERIES[:2], QUERIES[2:]]))
    assert np.allclose(np.vstack([q1, q2]), local.embed_queries(QUERIES), atol=1e-5)
    i1, i2 = asyncio.run(cls._items_batch.__wrapped__(replica, [(images[:1], ["a"]), (images[1:], ["b"] * 3)]))
    assert np.allclose(np.vstack([i1, i2]), local.embed_items(images, []), atol=1e-5)
    i1, i2 = asyncio.run(cls._items_batch.__wrapped__(replica, [(images[:1], ["a"]), (images[1:], [])]))
    assert np.allclose(np.vstack([i1, i2]), local.embed_items(images, []), atol=1e-5)
    ok, failed = asyncio.run(cls._items_batch.__wrapped__(replica, [(images[:1], []), ([], ["only captions"])]))
    assert ok.shape == (1, 8) and isinstance(failed, ValueError)  # only the faulty caller gets an error


def test_serve_replica_with_a_missing_model_fails_readiness_with_its_reason(tmp_path: Path) -> None:
    from sleuth.serve import deployments

    replica = deployments.Retriever.func_or_class({"settings": {"retriever": {"model": str(tmp_path / "x")}}})
    with pytest.raises(deployments.ToolNotReady, match=r"^Retriever failed to load: retriever model folder .* does "
                       "not exist: set retriever.model"):
        replica.check_health()
