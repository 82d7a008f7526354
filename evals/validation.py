"""Can the LLM validate events? Its verdict probability on the deduction golden suite.

HyCoVAD's second stage lets the LLM dismiss a candidate event it judges normal. That only helps
if the model's probability of "anomaly" (:func:`sleuth.agents.deduction.deduce_frame`, read from
its verdict token) separates anomalous from normal observations. This check runs the
``deduction`` golden suite (``evals/golden/deduction.json``: captions of Ped2-, Avenue- and
vtest-like scenes, each with the scene's rules and the expected verdict, written by the team, not
taken from test labels) and reports:

- ``auc``: ROC AUC of the probability against the expected verdicts (50: no better than chance);
- ``by_level``: for each dismissal level, the share of anomalous cases kept and of normal cases
  dismissed, i.e. what ``DetectConfig.dismiss_below`` at that level would do.

    python -m sleuth.evals.validation [--model qwen2.5-coder-1.5b] [--replay] --output results/validation
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sleuth.agents.deduction import deduce_frame
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.evals.prompt_suites import SUITES, case_rules, cassette_path
from sleuth.graphs.runtime import Runtime
from sleuth.llm.cassette import Cassette

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5)


def run(runtime: Runtime, *, replay: bool = False) -> dict[str, Any]:
    model = runtime.settings.llm.model or "llm"
    if replay:
        runtime.gateway.cassette = Cassette(cassette_path(model, "deduction"), "replay")
    expected, probability, failed = [], [], 0
    for case in SUITES["deduction"].cases():
        try:
            deduction = deduce_frame(case["caption"], "(none)", case_rules(case), runtime.gateway)
        except SleuthError:
            failed += 1
            continue
        expected.append(case["expected"] == "anomaly")
        probability.append(deduction.probability)
    y, p = np.asarray(expected, bool), np.asarray(probability, float)
    by_level = {f"{level:g}": {"anomalies_kept": round(float((p[y] >= level).mean()), 3),
                               "normals_dismissed": round(float((p[~y] < level).mean()), 3)} for level in LEVELS}
    return {"model": model, "cases": len(y), "failed": failed, "anomalous": int(y.sum()),
            "auc": round(100 * float(roc_auc_score(y, p)), 1) if 0 < y.sum() < len(y) else None,
            "mean_probability": {"anomalous": round(float(p[y].mean()), 3), "normal": round(float(p[~y].mean()), 3)},
            "by_level": by_level}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleuth.evals.validation", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="LLM (e.g. qwen2.5-coder-1.5b); default: configured")
    parser.add_argument("--replay", action="store_true", help="answer from the deduction suite's cassette")
    parser.add_argument("--output", type=Path, default=Path("results/validation"))
    args = parser.parse_args(argv)
    runtime = Runtime.from_settings(load_settings(), model=args.model)
    try:
        result = run(runtime, replay=args.replay)
    except SleuthError as error:
        print(f"error: {error.one_line()}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"validation-{result['model']}.json"
    path.write_text(json.dumps(result, indent=2))
    levels = "; ".join(f"below {level}: keeps {v['anomalies_kept']:.0%} of anomalies, dismisses "
                       f"{v['normals_dismissed']:.0%} of normal cases" for level, v in result["by_level"].items())
    print(f"{result['model']}: verdict probability AUC {result['auc']} on {result['cases']} golden cases "
          f"({result['failed']} without a valid answer); {levels}")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
