"""Install the perception models into the model cache: ``python -m sleuth.tools.perception.install``.

Run by ``scripts/setup.sh``; quick when every model is there and unchanged (a hash of each file
against its install stamp). One line per model on stdout, progress on stderr; exit status 1 with
one line on stderr when a model cannot be installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sleuth.errors import SleuthError
from sleuth.tools.perception import models


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleuth.tools.perception.install",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: the configured cache_dir")
    parser.add_argument("--quiet", action="store_true", help="print nothing when every model is ready already")
    args = parser.parse_args(argv)
    try:
        if args.cache_dir is None:
            from sleuth.config import load_settings

            args.cache_dir = load_settings().cache_dir
        ready = [models.problem(model, args.cache_dir) is None for model in models.MODELS]
        paths = models.install(args.cache_dir, log=_progress)
    except SleuthError as exc:
        print(f"perception: {exc.one_line()}", file=sys.stderr)
        return 1
    if not (args.quiet and all(ready)):
        for model, path, was_ready in zip(models.MODELS, paths, ready, strict=True):
            print(f"{model.name}: {'ready' if was_ready else 'installed'} at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
