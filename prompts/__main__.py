"""``python -m sleuth.prompts lock``: record the fingerprint of each prompt version (see versions.lock.json);
``python -m sleuth.prompts check``: list prompts changed without a version bump."""

from __future__ import annotations

import sys

from sleuth.errors import SleuthError
from sleuth.prompts import lock_problems, update_lock


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    try:
        if command == "lock":
            added = update_lock()
            print("recorded " + (", ".join(added) if added else "nothing new"))
            return 0
        if command == "check":
            problems = lock_problems()
            for problem in problems:
                print(problem)
            return 1 if problems else 0
    except SleuthError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    print("usage: python -m sleuth.prompts lock|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
