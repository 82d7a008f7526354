"""``sleuth eval agent``: tool-choice accuracy and first-token latency of the investigate agent
(sleuth.evals.agent_bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def eval_agent(
    output: Annotated[Path, typer.Option(help="Output folder for agent_bench.json and .md.")] = Path("results/agent"),
    model: Annotated[str | None, typer.Option(
        help="LLM of the agent, e.g. qwen2.5-coder-0.5b (default: llm.agent_model, the packaged 1.5B).")] = None,
    question: Annotated[list[str] | None, typer.Option(
        "--question", help="Only this question id of the questions file (repeatable).")] = None,
    questions_file: Annotated[Path | None, typer.Option(
        help="Questions file (default: evals/agent_questions.json; evals/agent_questions_dev.json is the development "
        "set that prompt changes are chosen on).")] = None,
    tool_mode: Annotated[str, typer.Option(
        help="How the model picks a tool: auto (schema on the embedded llama.cpp, else native), schema, native.")]
    = "auto",
) -> None:
    """Ask the agent 40 analyst questions for its first step: right tool, right arguments, latency."""
    from sleuth.evals.agent_bench import QUESTIONS, latency_line, run_agent_benchmark, summary_rows

    if tool_mode not in ("auto", "schema", "native"):
        from sleuth.cli.runner import fail

        raise fail(f"--tool-mode {tool_mode!r}: use auto, schema or native")
    with request("eval agent") as settings:
        result = run_agent_benchmark(output, settings=settings, model=model, questions=question, progress=err.print,
                                     tool_mode=tool_mode, questions_path=questions_file or QUESTIONS)  # type: ignore[arg-type]

    table = Table(title=f"agent tool choice · {result.model} · {result.tool_mode} steps · {result.questions} questions",
                  box=None,
                  header_style="bold", title_justify="left")
    for column in ("expected tool", "questions", "tool (%)", "arguments (%)", "called instead"):
        table.add_column(column, justify="right" if column in ("questions", "tool (%)", "arguments (%)") else "left")
    for row in summary_rows(result):
        table.add_row(*row)
    out.print(table)
    err.print(f"{latency_line(result)}; no-tool questions right {result.no_tool_correct}/{result.no_tool_questions}, "
              f"no call where one was expected {result.missed_calls}, malformed or nonexistent-name calls "
              f"{result.invalid_calls}, errors {result.errors}; wrote "
              f"{result.outputs['result']} and {result.outputs['table']}")
