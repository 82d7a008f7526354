"""Dependencies point one way: cli -> serve/evals/live -> graphs -> reports -> agents/memory -> tools -> llm
-> config, prompts, errors and the shared records. A module that imports from a layer above its own
makes a circle sooner or later (tools importing serve, reports importing a graph's state)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"config": 0, "errors": 0, "records": 0, "telemetry": 0, "datapaths": 0, "prompts": 0,
         "llm": 1, "tools": 2, "agents": 3, "memory": 3, "reports": 4, "graphs": 5,
         "serve": 6, "evals": 6, "live": 6, "doctor": 6, "cli": 7}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward, checked = [], 0
    for name, layer in LAYER.items():
        paths = sorted((ROOT / name).rglob("*.py")) if (ROOT / name).is_dir() else [ROOT / f"{name}.py"]
        for path in (p for p in paths if p.exists()):
            checked += 1
            for line, module in _imports(path):
                parts = module.split(".")
                if parts[0] == "sleuth" and len(parts) > 1 and LAYER.get(parts[1], -1) > layer:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert checked > 50
    assert upward == []
