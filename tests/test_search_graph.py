"""The ``search`` graph and ``sleuth search``: retrieval, parallel cloze completion, re-ranking, fusion.

Real gallery memory (Qdrant in memory or local mode) and the caption-text retriever over
:class:`HashEmbedder` vectors; the LLM is a scripted endpoint that answers from the request, so
the parallel completion branches may run in any order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.runtime import Runtime
from sleuth.graphs.search import SearchConfig, search
from sleuth.llm.gateway import Gateway
from sleuth.memory.gallery import GalleryItem, GalleryStore
from sleuth.tools.retriever import CaptionTextRetriever
from sleuth.tools.toolset import InProcessTools

from tests.conftest import HashEmbedder, ScriptedOpenAI

CAPTIONS = {  # retrieval ranks these by shared words with the query; completion reads the verb and colour
    "a": "a person in red on the path near the gate",
    "b": "a person in red near the gate on the path, standing still",
    "c": "a person running, white",
    "d": "a car on the lawn",
}
QUERY = "a person in red running near the gate"


def _items() -> list[GalleryItem]:
    return [GalleryItem(id=f"00000000-0000-0000-0000-00000000000{n}", video=f"/videos/{key}.mp4", frame=10 * n,
                        time_s=float(n), kind="person", box=(0, 0, 10, 20), caption=caption)
            for n, (key, caption) in enumerate(CAPTIONS.items(), 1)]


def _store(embedder: HashEmbedder, settings: Settings) -> GalleryStore:
    store = GalleryStore.in_memory(settings)
    retriever = CaptionTextRetriever(embedder)
    store.create("cams", {"caption": (embedder.dim, retriever.name)})
    items = _items()
    store.add("cams", items, {"caption": embedder([item.caption for item in items])})
    return store


def _responder(body: dict[str, Any]) -> tuple[str, None]:
    """Cloze generation, completion from the description in the prompt, and comparison."""
    prompt = body["messages"][-1]["content"]
    if prompt.startswith("Query:"):
        return json.dumps({"text": "", "slots": [{"name": "COLOR_1", "kind": "COLOR", "answer": "red"},
                                                 {"name": "VERB_1", "kind": "VERB", "answer": "running"}]}), None
    if "Evidence:" in prompt:
        evidence = prompt.split("Evidence:", 1)[1]
        verb = next((w for w in ("running", "standing") if w in evidence), "UNKNOWN")
        colour = next((w for w in ("red", "white") if w in evidence), "UNKNOWN")
        return json.dumps({"COLOR_1": colour, "VERB_1": verb}), None
    pairs = re.findall(r"^\d+\.", prompt, flags=re.MULTILINE)
    return json.dumps({"equivalent": [False] * len(pairs)}), None


@pytest.fixture
def runtime(scripted_openai: ScriptedOpenAI) -> Runtime:
    scripted_openai.responder = _responder
    settings = load_settings()
    embedder = HashEmbedder()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=embedder,
                   tools=InProcessTools(settings, embedder=embedder), checkpoint_path=None)


def test_each_top_n_candidate_is_completed_compared_and_fused(runtime: Runtime,
                                                               scripted_openai: ScriptedOpenAI) -> None:
    store = _store(runtime.embedder, runtime.settings)  # type: ignore[arg-type]
    result = search(QUERY, "cams", runtime=runtime, store=store)
    retrieval = [entry.item.caption for entry in result.retrieval]
    assert set(retrieval[:3]) == {CAPTIONS["a"], CAPTIONS["b"], CAPTIONS["c"]}  # word overlap with the query
    assert result.cloze is not None and result.cloze.text == "a person in <COLOR>_1 <VERB>_1 near the gate"
    by_caption = {entry.item.caption: entry for entry in result.results}
    # a: red, verb unknown -> 1 match; b: red + standing -> 1; c: white + running -> 1; tie at n=0 ...
    assert {key: by_caption[CAPTIONS[key]].completion.fills for key in "abc"} == {  # type: ignore[union-attr]
        "a": {"COLOR_1": "red", "VERB_1": "UNKNOWN"}, "b": {"COLOR_1": "red", "VERB_1": "standing"},
        "c": {"COLOR_1": "white", "VERB_1": "running"}}
    assert {by_caption[CAPTIONS[key]].rank for key in "abc"} == {0}
    assert by_caption[CAPTIONS["d"]].rank is None and by_caption[CAPTIONS["d"]].completion is None
    for entry in result.results:
        bonus = 0.075 * 0.5 ** entry.rank if entry.rank is not None else 0.0
        assert entry.score == pytest.approx(entry.s1 + bonus)
    assert [e.score for e in result.results] == sorted((e.score for e in result.results), reverse=True)
    # 1 cloze + 3 completions (parallel branches), colours decided in code, "standing" vs "running" asked once
    assert result.llm_calls == len(scripted_openai.requests) == 5


def test_fusion_lifts_the_candidate_whose_completion_matches_the_query(runtime: Runtime) -> None:
    store = _store(runtime.embedder, runtime.settings)  # type: ignore[arg-type]
    query = "a person in white running near the gate on the path"
    result = search(query, "cams", runtime=runtime, store=store, config=SearchConfig(top_k=4, top_n=4, a2=1.0))
    assert result.retrieval[0].item.caption != CAPTIONS["c"]  # fewer shared words than a and b
    first = result.results[0]
    assert first.item.caption == CAPTIONS["c"] and first.rank == 0  # white + running: both slots match
    assert {entry.rank for entry in result.results[1:]} == {1}  # no slot matched: tied one rank below
    assert first.completion is not None and first.completion.matches == {"COLOR_1": True, "VERB_1": True}
    assert len(result.results) == len(result.retrieval) == 4


def test_without_reranking_the_result_is_the_retrieval_order_and_no_model_is_called(
        runtime: Runtime, scripted_openai: ScriptedOpenAI) -> None:
    store = _store(runtime.embedder, runtime.settings)  # type: ignore[arg-type]
    result = search(QUERY, "cams", runtime=runtime, store=store, config=SearchConfig(top_n=0, top_k=2))
    assert [e.item.id for e in result.results] == [e.item.id for e in result.retrieval]
    assert len(result.results) == 2 and result.cloze is None
    assert scripted_openai.requests == [] and result.llm_calls == 0


def test_kind_filter_and_bad_input_errors(runtime: Runtime) -> None:
    store = _store(runtime.embedder, runtime.settings)  # type: ignore[arg-type]
    assert search(QUERY, "cams", runtime=runtime, store=store, config=SearchConfig(kinds=["frame"])).results == []
    with pytest.raises(SleuthError, match="query is empty"):
        search("   ", "cams", runtime=runtime, store=store)
    with pytest.raises(SleuthError, match="nope"):
        search(QUERY, "nope", runtime=runtime, store=store)


def test_a_gallery_indexed_with_another_retriever_is_refused(runtime: Runtime) -> None:
    store = GalleryStore.in_memory(runtime.settings)
    store.create("cams", {"caption": (64, "some-other-model (captions)")})
    with pytest.raises(SleuthError, match="index"):
        search(QUERY, "cams", runtime=runtime, store=store)


def test_cli_search_prints_ranked_results_and_writes_json_and_html(
        scripted_openai: ScriptedOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    scripted_openai.responder = _responder
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    embedder = HashEmbedder()
    monkeypatch.setattr("sleuth.graphs.runtime.open_tools",
                        lambda settings, **_: InProcessTools(settings, embedder=embedder))
    monkeypatch.setattr("sleuth.tools.embedder.TextEmbedder.__call__", lambda self, texts: embedder(texts))
    with GalleryStore(settings) as store:  # local mode on disk: the CLI opens it again
        retriever = CaptionTextRetriever(embedder)
        store.create("cams", {"caption": (embedder.dim, retriever.name)})
        items = _items()
        store.add("cams", items, {"caption": embedder([item.caption for item in items])})
    crop = np.zeros((20, 10, 3), dtype=np.uint8)
    monkeypatch.setattr("sleuth.memory.gallery.item_image", lambda item, **_: crop)
    result = CliRunner().invoke(app, ["search", QUERY, "--gallery", "cams", "--json", str(tmp_path / "r.json"),
                                      "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "cloze (llm" in result.output and "COLOR_1=red✓" in result.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert len(saved["results"]) == 4 and saved["cloze"]["slots"][0]["answer"] == "red"
    page = (tmp_path / "r.html").read_text()
    assert page.count('<div class="hit">') == 4 and "data:image/jpeg;base64," in page
    missing = CliRunner().invoke(app, ["search", QUERY, "--gallery", "nope"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert [line for line in missing.output.splitlines() if line.startswith("error:")][0].count("nope") >= 1


def test_index_and_search_with_a_tiny_clip_retriever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLIP path end to end through the CLI: image vectors at index time, text tower at search time."""
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    from tests.synthetic_video import BLUE, RED, Mover, render, write_video
    from tests.tiny_models import build_tiny_clip

    video = write_video(tmp_path / "walk.mp4", render([Mover(0, 10, 16, 40, vx=30.0, colour=RED),
                                                         Mover(130, 70, 18, 44, vx=-20.0, colour=BLUE)], n_frames=30))
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLEUTH_RETRIEVER__MODEL", str(build_tiny_clip(tmp_path / "clip")))
    runner = CliRunner()
    indexed = runner.invoke(app, ["index", str(video), "--gallery", "cams", "--every", "0.5"])
    assert indexed.exit_code == 0, indexed.output
    found = runner.invoke(app, ["search", "a red person walking", "--gallery", "cams", "--top-n", "0",
                                "--json", str(tmp_path / "r.json")])
    assert found.exit_code == 0, found.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["retriever"].endswith("(image vectors)") and saved["llm_calls"] == 0
    assert len(saved["results"]) == 10 and all(entry["item"]["video"] == str(video) for entry in saved["results"])
    # the gallery remembers its image model: another CLIP model is refused in one line ...
    monkeypatch.setenv("SLEUTH_RETRIEVER__MODEL", str(build_tiny_clip(tmp_path / "other-clip", seed=1)))
    refused = runner.invoke(app, ["search", "a red person walking", "--gallery", "cams", "--top-n", "0"])
    assert refused.exit_code == 2 and "--replace" in refused.output and "Traceback" not in refused.output
    # ... while its caption vectors still serve the embedded caption-text retriever
    monkeypatch.delenv("SLEUTH_RETRIEVER__MODEL")
    by_caption = runner.invoke(app, ["search", "a red person walking", "--gallery", "cams", "--top-n", "0",
                                     "--json", str(tmp_path / "c.json")])
    assert by_caption.exit_code == 0, by_caption.output
    assert json.loads((tmp_path / "c.json").read_text())["retriever"].endswith("(caption vectors)")


@pytest.mark.slow
def test_cli_index_and_search_with_the_packaged_llm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real parts only: object stage, MiniLM, Qdrant local mode, the packaged LLM for the cloze agents."""
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    from tests.synthetic_video import BLUE, RED, Mover, render, write_video

    video = write_video(tmp_path / "walk.mp4", render([Mover(0, 10, 16, 40, vx=30.0, colour=RED),
                                                         Mover(130, 70, 18, 44, vx=-20.0, colour=BLUE)], n_frames=30))
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(video), "--gallery", "cams"]).exit_code == 0
    found = runner.invoke(app, ["search", "a person in red walking to the right", "--gallery", "cams",
                                "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    assert found.exit_code == 0, found.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [slot["answer"] for slot in saved["cloze"]["slots"]] == ["red", "walking"]
    completed = [entry for entry in saved["results"] if entry["completion"]]
    assert len(completed) == 3 and all(set(entry["completion"]["fills"]) == {"COLOR_1", "VERB_1"}
                                       for entry in completed)
    assert "red" in saved["results"][0]["item"]["caption"]  # the red walker's crop comes first
    assert (tmp_path / "r.html").read_text().count('<div class="hit">') == len(saved["results"])
