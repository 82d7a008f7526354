"""``langgraph.json``: every graph it names loads the way LangGraph Server loads it (file path + attribute)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
