"""Times and numbers as people and models write them, read one way everywhere.

``0:45``, ``1:05.3`` (minutes and seconds) and ``20 s`` / ``20 seconds`` are times; a clock time
is one time, not two numbers. The agent's message hints, the streamed answer's repeat check, the
explanation's faithfulness check and the chat suite's grounding check all read them here.
"""

from __future__ import annotations

import re

CLOCK = re.compile(r"(?<![\d:.])(\d{1,2}):([0-5]\d(?:\.\d+)?)(?![\d:])")
SECONDS = re.compile(r"(?<![\d:.])(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)\b", re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


def clock_times(text: str) -> list[tuple[str, float]]:
    """Each ``m:ss(.s)`` of ``text`` as written, with its value in seconds (``1:05`` is 65)."""
    return [(m.group(0), int(m.group(1)) * 60 + float(m.group(2))) for m in CLOCK.finditer(text)]


def cited_times(text: str) -> list[tuple[str, float]]:
    """The times ``text`` gives: clock times, then ``N s`` / ``N seconds``, each with its value in seconds."""
    return clock_times(text) + [(m.group(0), float(m.group(1))) for m in SECONDS.finditer(text)]


def numbers(text: str) -> list[float]:
    """Every number of ``text``, clock times as their parts (``0:15.3`` gives 0 and 15.3)."""
    return [float(number) for number in NUMBER.findall(text)]
