"""``sleuth eval prompts``: golden suites per agent, live, recorded or replayed, against thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sleuth.cli.runner import err, request

out = Console(highlight=False, soft_wrap=True)


def eval_prompts(
    suite: Annotated[list[str] | None, typer.Option(help="Suite to run (repeatable; default all).")] = None,
    model: Annotated[str | None, typer.Option(help="LLM (e.g. qwen2.5-coder-1.5b); default: configured.")] = None,
    record: Annotated[bool, typer.Option(help="Run live and store the answers as cassettes (the new baseline).")]
    = False,
    replay: Annotated[bool, typer.Option(help="Answer from the cassettes; no model is started.")] = False,
    output: Annotated[Path, typer.Option(help="Folder for prompt_evals.json.")] = Path("results/prompts"),
) -> None:
    """Pass rate per suite and prompt version; exits 1 when a suite is under its threshold."""
    from sleuth.errors import SleuthError
    from sleuth.evals.prompt_suites import SUITES, failure_diff, run_suite, thresholds
    from sleuth.graphs.runtime import Runtime

    failed = False
    with request("eval prompts") as settings:
        if record and replay:
            raise SleuthError("--record and --replay exclude each other", hint="pick one")
        mode = "record" if record else "replay" if replay else "live"
        runtime = Runtime.from_settings(settings, model=model)
        limits = thresholds()
        results = []
        try:
            for name in suite or list(SUITES):
                results.append(run_suite(name, runtime=runtime, mode=mode, limits=limits,  # type: ignore[arg-type]
                                         progress=lambda line: err.print(f"[dim]{escape(line)}[/]")))
        finally:
            runtime.close()
        table = Table(box=None, header_style="bold")
        for column in ("suite", "prompt", "cases", "pass rate", "threshold", "", "LLM calls", "s"):
            table.add_column(column)
        for result in results:
            verdict = "[green]ok[/]" if result.ok else "[bold red]UNDER[/]"
            table.add_row(result.suite, result.prompt, str(result.cases), f"{100 * result.pass_rate:.1f}%",
                          "-" if result.threshold is None else f"{100 * result.threshold:.0f}%", verdict,
                          str(result.llm_calls), f"{result.seconds:.1f}")
        out.print(f"prompt evals · {results[0].model if results else ''} · {mode}")
        out.print(table)
        for result in results:
            if not result.ok:
                failed = True
                err.print(f"[bold red]{result.suite} is under its threshold; failing cases against the recording:[/]")
                for line in failure_diff(result):
                    err.print(escape(line))
        output.mkdir(parents=True, exist_ok=True)
        path = output / "prompt_evals.json"
        path.write_text(json.dumps([result.model_dump(mode="json") for result in results], indent=1) + "\n")
        err.print(f"wrote {path}")
    if failed:
        raise typer.Exit(1)
