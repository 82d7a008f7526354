"""``langgraph.json``: every graph it names loads the way LangGraph Server loads it (file path + attribute)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def load_studio(name: str) -> Any:
    """The module that ``langgraph.json`` names for graph ``name``, loaded as LangGraph Server loads it
    (file path + attribute), with a fresh shared runtime."""
    path, _ = CONFIG["graphs"][name].split(":")
    spec = importlib.util.spec_from_file_location(f"studio_{name}", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._runtime.cache_clear()
    return module


def test_the_config_names_the_products_graphs() -> None:
    assert set(CONFIG["graphs"]) == {"investigate", "search", "detect", "explain", "calibrate"}
    assert CONFIG["dependencies"] == ["."] and CONFIG["python_version"] == "3.11"


@pytest.mark.parametrize("name", sorted(CONFIG["graphs"]))
def test_each_graph_factory_compiles_its_graph(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    _, attribute = CONFIG["graphs"][name].split(":")
    graph = getattr(load_studio(name), attribute)({})
    nodes = set(graph.get_graph().nodes)
    expected = {"investigate": {"agent", "tools"}, "search": {"retrieve", "generate_cloze", "complete", "fuse"}}
    assert expected.get(name, set()) <= nodes and len(nodes) > 2
    assert graph.checkpointer is None  # the server brings its own persistence


VTEST = ROOT.parent / "shared" / "data" / "videos" / "vtest.avi"


@pytest.mark.skipif(not VTEST.is_file(), reason="needs ../shared/data beside the repository (as in CI)")
def test_detect_and_explain_run_as_the_server_runs_them_on_a_real_clip(
        scripted_openai: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The documented input of each graph, its settings as the run's context, on 20 frames of vtest.avi
    (the LLM is scripted: control flow only)."""
    from sleuth.agents.schemas import Rule, RuleSet

    scripted_openai.replies = [json.dumps({"description": "People walk.", "analysis": "Walking is normal."})]
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    studio = load_studio("detect")
    studio._runtime().memory.save(RuleSet(scene="campus", rules=[Rule(text="Riding a bicycle", kind="anomaly"),
                                                                 Rule(text="Walking on the pathway", kind="normal")]))
    detected = studio.detect({}).invoke({"video": str(VTEST), "scene": "campus"}, context={"stop": 20})
    report = detected["report"]
    assert [frame["index"] for frame in report["frames"]] == list(range(20))
    assert report["models"]["proposer"] == "none (rules only)" and all(f["caption"] for f in report["frames"])
    explained = studio.explain({}).invoke(
        {"video": str(VTEST), "scene": "campus", "scores": [frame["score"] for frame in report["frames"]],
         "events": report["events"], "stop": 20}, context={"frames": 4})
    explanation = explained["explanation"]
    assert len(explanation["sampled_frames"]) == 4 and explanation["video_judgment"]["level"] == "video"
    assert explanation["source"] == "captions" and explanation["captions"]


@pytest.mark.skipif(not VTEST.is_file(), reason="needs ../shared/data beside the repository (as in CI)")
def test_calibrate_runs_as_the_server_runs_it_on_a_real_clip(
        scripted_openai: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its documented input and settings as the run's context (40 frames of vtest.avi, a tiny proposer;
    the LLM's induction is scripted); bad input fails in the graph's own check, before any training."""
    from sleuth.errors import SleuthError

    induced = {"anomaly_human_activities": ["Riding a bicycle"], "anomaly_objects": ["a car"],
               "normal_human_activities": ["Walking"], "normal_objects": ["a bag"]}
    scripted_openai.responder = lambda body: (json.dumps(induced), None)
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    studio = load_studio("calibrate")
    graph = studio.calibrate({})
    tiny = {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16, "memory_slots": 10}
    context = {"stop": 40, "proposer": tiny, "caption_frames": 6, "caption_context": 2}
    output = graph.invoke({"sources": [str(VTEST)], "scene": "campus"}, context=context)
    result = output["result"]
    assert set(output) == {"result"} and result["scene"] == "campus" and result["frames"] == 40
    assert Path(result["proposer_checkpoint"]).is_file() and result["captions"] == 6
    assert "Riding a bicycle" in result["anomaly_rules"] and result["rules_version"] == 1
    with pytest.raises(SleuthError, match="normal footage not found"):
        graph.invoke({"sources": [str(tmp_path / "missing.mp4")], "scene": "campus"}, context=context)
    with pytest.raises(SleuthError, match="invalid scene name"):
        graph.invoke({"sources": [str(VTEST)], "scene": "../etc"}, context=context)


@pytest.mark.skipif(not VTEST.is_file(), reason="needs ../shared/data beside the repository (as in CI)")
def test_search_runs_as_the_server_runs_it_on_a_real_gallery(
        scripted_openai: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its documented input on a gallery indexed from 30 frames of vtest.avi (the embedded detector and
    retriever; the LLM's cloze steps are scripted), the settings as the run's context."""
    from sleuth.errors import SleuthError
    from sleuth.graphs.search.index import index_videos
    from sleuth.memory.gallery import GalleryStore
    from sleuth.tools.frames import FrameReader

    from tests.synthetic_video import write_video

    def responder(body: dict[str, Any]) -> tuple[str, None]:
        prompt = body["messages"][-1]["content"]
        if prompt.startswith("Query:"):
            return json.dumps({"text": "", "slots": [{"name": "VERB_1", "kind": "VERB", "answer": "walking"}]}), None
        if "Evidence:" in prompt:
            return json.dumps({"VERB_1": "walking"}), None
        return json.dumps({"equivalent": [True]}), None

    scripted_openai.responder = responder
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    clip = write_video(tmp_path / "vtest30.mp4", [frame.image for frame in FrameReader(VTEST, stop=30)], fps=10)
    studio = load_studio("search")
    store = GalleryStore(studio._runtime().settings)
    try:
        indexed = index_videos([clip], "campus", runtime=studio._runtime(), store=store)
    finally:
        store.close()
    assert indexed.items["person"] > 0
    graph = studio.search({})
    output = graph.invoke({"query": "a person walking", "gallery": "campus"}, context={"top_k": 5, "top_n": 2})
    assert set(output) <= {"results", "hits", "cloze", "retriever"} and len(output["results"]) == 5
    assert output["cloze"]["slots"][0]["answer"] == "walking"
    assert sum(1 for entry in output["results"] if entry["completion"]) == 2  # top_n from the context
    with pytest.raises(SleuthError, match="no gallery 'nowhere'"):
        graph.invoke({"query": "a person walking", "gallery": "nowhere"})
    with pytest.raises(SleuthError, match="the search query is empty"):
        graph.invoke({"query": "  ", "gallery": "campus"})


@pytest.mark.skipif(not VTEST.is_file(), reason="needs ../shared/data beside the repository (as in CI)")
def test_investigate_runs_as_the_server_runs_it_on_a_real_clip(
        scripted_openai: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its documented input (messages); the scripted model calls a real tool on vtest.avi, then answers."""
    replies = [json.dumps({"name": "show_clip", "arguments": {"video": str(VTEST), "start_s": 0.0, "end_s": 2.0}}),
               "The sheet shows people walking on the pathway."]

    def responder(body: dict[str, Any]) -> tuple[str, None]:
        messages = body["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        return replies[min(sum(m["role"] == "tool" for m in messages[last_user:]), 1)], None

    scripted_openai.responder = responder
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLEUTH_DATA_DIRS", json.dumps([str(VTEST.parent)]))
    studio = load_studio("investigate")
    output = studio.investigate({}).invoke(
        {"messages": [{"role": "user", "content": "show me the first two seconds of vtest.avi"}]})
    messages = output["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert "contact sheet of vtest.avi 0:00.0-0:02.0" in messages[2]["content"]
    jpeg = Path(messages[2]["content"].split(" written to ", 1)[1].split(":", 1)[0])
    assert jpeg.is_file() and jpeg.read_bytes()[:2] == b"\xff\xd8"
    assert messages[-1]["content"] == "The sheet shows people walking on the pathway."
