"""``sleuth eval chat``: the end-to-end question suite of the investigate agent (sleuth.evals.chat_bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def eval_chat(
    data: Annotated[Path, typer.Option(help="The shared data folder (videos/vtest.avi, "
                                       "videos/ucf_Robbery102_frames.mp4, videos/xd_GoldenEye_frames.mp4).")]
    = Path("../shared/data"),
    output: Annotated[Path, typer.Option(help="Output folder for chat_bench.json and .md (its state/ is rebuilt).")]
    = Path("results/chat"),
    model: Annotated[str | None, typer.Option(
        help="LLM of the agent's steps and answers, e.g. qwen2.5-coder-0.5b (default: llm.agent_model, the "
        "1.5B); its tools keep llm.model.")] = None,
    question: Annotated[list[str] | None, typer.Option(
        "--question", help="Only this question id of evals/chat_questions.json (repeatable).")] = None,
    keep_state: Annotated[bool, typer.Option(help="Reuse OUTPUT/state from the last run (its scenes, gallery and "
                                             "rule edits) instead of building it again (about 10 minutes).")] = False,
) -> None:
    """Ask the agent 28 analyst questions on the real clips, tools really run, and check each answer."""
    from sleuth.evals.chat_bench import run_chat_benchmark

    with request("eval chat") as settings:
        result = run_chat_benchmark(data, output, settings=settings, model=model, questions=question,
                                    progress=err.print, keep_state=keep_state)
    p50 = result.seconds.p50
    first = result.first_token_s.p50
    out.print(f"{result.model}: {result.passed}/{result.questions} questions answered right "
              f"({100 * result.pass_rate:.0f} %), {result.tool_calls:.2f} tool calls and "
              f"{result.prompt_tokens + result.completion_tokens:.0f} tokens per question, first token p50 "
              f"{'-' if first is None else f'{first:.1f}'} s, answer p50 {'-' if p50 is None else f'{p50:.1f}'} s")
    err.print(f"wrote {result.outputs['result']} and {result.outputs['table']}")
