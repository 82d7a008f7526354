"""``langgraph.json``: every graph it names loads the way LangGraph Server loads it (file path + attribute)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def test_the_config_names_the_products_graphs() -> None:
    assert set(CONFIG["graphs"]) == {"investigate", "search", "detect", "explain", "calibrate"}
    assert CONFIG["dependencies"] == ["."] and CONFIG["python_version"] == "3.11"


@pytest.mark.parametrize("name", sorted(CONFIG["graphs"]))
def test_each_graph_factory_compiles_its_graph(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    path, attribute = CONFIG["graphs"][name].split(":")
    spec = importlib.util.spec_from_file_location(f"studio_{name}", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._runtime.cache_clear()
    graph = getattr(module, attribute)({})
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
    path, _ = CONFIG["graphs"]["detect"].split(":")
    spec = importlib.util.spec_from_file_location("studio_run", ROOT / path)
    assert spec is not None and spec.loader is not None
    studio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(studio)
    studio._runtime.cache_clear()
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
