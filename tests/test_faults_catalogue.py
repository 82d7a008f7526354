"""docs/faults.md stays true: every test it names exists, and its case count is the number of rows."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_catalogue_names_exists_and_the_count_is_right() -> None:
    page = (ROOT / "docs" / "faults.md").read_text()
    rows = [line for line in page.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [int(row.split("|")[1]) for row in rows] == list(range(1, len(rows) + 1))
    stated = re.search(r"\*\*(\d+) cases, (\d+) pass\*\*", page)
    assert stated is not None and int(stated.group(1)) == len(rows)
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)}
    for row in rows:
        named = re.findall(r"`(test_\w+)`", row.rsplit("|", 2)[1])
        assert named, row
        missing = [name for name in named if name not in defined]
        assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
