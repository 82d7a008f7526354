"""The package installs under the one name ``sleuth`` and the CLI lists its commands."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sleuth.cli.main import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["agents", "tools", "graphs", "prompts", "evals", "serve", "llm", "cli"])
def test_every_folder_imports_under_sleuth(name: str) -> None:
    module = importlib.import_module(f"sleuth.{name}")
    assert Path(module.__file__).resolve().parent == ROOT / name


def test_wheel_puts_nothing_at_the_top_level_but_sleuth(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("sleuth-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top_level == {"sleuth", "sleuth-0.1.0.dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [path.relative_to(ROOT) for path in ROOT.rglob("*.py")
               if not {".venv", "tests", "build", "scripts"} & set(path.relative_to(ROOT).parts)]
    missing = [str(path) for path in sources if f"sleuth/{path.as_posix()}" not in names]
    assert not missing, f"left out of the wheel (add the package to pyproject.toml): {missing}"
    prompts = [f"sleuth/prompts/{path.name}" for path in (ROOT / "prompts").glob("*.toml")]
    assert prompts and set(prompts) <= names
    assert not any(name.startswith("sleuth/tests/") for name in names)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("doctor", "ask", "eval"):
        assert command in result.output


def _imports() -> dict[str, set[str]]:
    """Each sleuth module and the sleuth modules it imports when it runs (at the top or inside functions;
    not those under ``if TYPE_CHECKING``)."""
    import ast

    modules: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if {".venv", "tests", "build", "scripts"} & set(parts):
            continue
        name = ".".join(("sleuth", *parts)).removesuffix(".py").removesuffix(".__init__")
        found = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # imports for type hints only do not run
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sleuth"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("sleuth")}
        modules[name] = found
    return {name: {target for target in targets if target in modules and target != name}
            for name, targets in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports (strongly connected, more than one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_imports_point_one_way() -> None:
    """Issue 16: no circle of imports between modules (reports/html <-> reports/store was one), and
    the tools import nothing above them (tools/toolset -> serve/handles was one). A package's ``__init__``
    re-exporting its own submodules is not a circle."""
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    graph = {name: {target for target in targets if not related(name, target)} for name, targets in _imports().items()}
    assert _circles(graph) == []
    upward = sorted((name, target) for name, targets in graph.items() for target in targets
                    if name.startswith("sleuth.tools") and target.startswith(("sleuth.serve", "sleuth.graphs",
                                                                              "sleuth.cli", "sleuth.evals")))
    assert upward == []  # open_tools' ray backend is the tools' own client (sleuth.tools.remote)


def test_the_cli_starts_without_loading_the_models() -> None:
    """CI stop 24: ``sleuth rules list`` took 22 s to say Qdrant was unreachable, because importing
    the CLI imported every graph, torch and LiteLLM. Commands load their stack when they run."""
    code = ("import sys, sleuth.cli.main; "
            "print(sorted(m for m in ('torch', 'litellm', 'langgraph', 'transformers', 'onnxruntime', 'cv2') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
