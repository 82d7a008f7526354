"""The agent's next step decoded under a JSON schema built from the tool registry.

A small local model calling tools natively often writes no call, a malformed one, or a tool that
does not exist. Here the step is one JSON object that the endpoint (llama.cpp turns the schema
into a grammar) cannot leave: ``{"tool": "<a real tool>", "arguments": {<that tool's
arguments>}}`` or ``{"tool": "answer"}``. So every call is well-formed, names a tool that exists,
and has arguments of the right types; scene, gallery and video arguments are enums of what exists
(:class:`Inventory`), so a call cannot name a scene that was never calibrated. An answer is then
written by a plain streamed call.

:func:`use_schema` chooses this for the embedded llama.cpp endpoint (``tool_mode = "auto"``);
other endpoints keep their native tool calling.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sleuth.agents.times import clock_times
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import ToolCall, embedded
from sleuth.prompts import load_prompt

ANSWER = "answer"
ToolMode = Literal["auto", "schema", "native"]
MAX_ENUM = 200  # longer lists of videos stay free text (the tool checks the path)
CREATES_SCENE = frozenset({"calibrate"})  # tools whose `scene` may name a scene that does not exist yet


class Inventory(BaseModel):
    """What exists now, for the step schema's enums: calibrated scenes, galleries, videos (as listed
    to the model). An empty list leaves that argument free (the tool then says what exists)."""

    scenes: list[str] = Field(default_factory=list)
    galleries: list[str] = Field(default_factory=list)
    videos: list[str] = Field(default_factory=list)
    durations: dict[str, float] = Field(default_factory=dict, description="Video path -> length in seconds.")

    def enum(self, argument: str, tool: str) -> list[str] | None:
        values = {"scene": [] if tool in CREATES_SCENE else self.scenes, "gallery": self.galleries,
                  "video": self.videos}.get(argument, [])
        return sorted(set(values)) if 0 < len(values) <= MAX_ENUM else None


def use_schema(runtime: Runtime, mode: ToolMode) -> bool:
    """Whether the agent's steps are decoded under the step schema (``auto``: on the local endpoint)."""
    if mode != "auto":
        return mode == "schema"
    return embedded(runtime.settings.llm)


def _arguments_schema(tool: str, parameters: dict[str, Any], inventory: Inventory | None) -> dict[str, Any]:
    """A tool's parameter schema, closed (no other keys), without pydantic's titles, and with the
    names of what exists as enums (``scene``, ``gallery``, ``video``) where ``inventory`` has them."""
    schema = copy.deepcopy(parameters)
    schema.pop("title", None)
    for name, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        values = inventory.enum(name, tool) if inventory is not None else None
        if values is not None and prop.get("type") == "string":
            prop["enum"] = values
    schema["additionalProperties"] = False
    schema.setdefault("type", "object")
    return schema


def step_schema(tools: list[dict[str, Any]], inventory: Inventory | None = None) -> dict[str, Any]:
    """One choice among the tools (each with its own arguments schema) or ``answer``."""
    options: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    for tool in tools:
        function = tool["function"]
        arguments = _arguments_schema(function["name"], function.get("parameters") or
                                      {"type": "object", "properties": {}}, inventory)
        definitions.update(arguments.pop("$defs", {}))
        options.append({"type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
                        "properties": {"tool": {"const": function["name"]}, "arguments": arguments}})
    options.append({"type": "object", "additionalProperties": False, "required": ["tool"],
                    "properties": {"tool": {"const": ANSWER}}})
    schema: dict[str, Any] = {"title": "next_step", "anyOf": options}
    if definitions:
        schema["$defs"] = definitions
    return schema


def _type_name(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "|".join(map(str, prop["enum"]))
    kinds = [option.get("type") for option in prop.get("anyOf", [prop]) if option.get("type") not in (None, "null")]
    return "/".join(str(kind) for kind in kinds) or "value"


def tool_menu(tools: list[dict[str, Any]]) -> str:
    """The tools in a few lines: ``- name(arg: type, opt?: type): what it does``."""
    lines = []
    for tool in tools:
        function = tool["function"]
        parameters = function.get("parameters") or {}
        required = set(parameters.get("required", []))
        arguments = ", ".join(f"{name}{'' if name in required else '?'}: {_type_name(prop)}"
                              for name, prop in parameters.get("properties", {}).items())
        lines.append(f"- {function['name']}({arguments}): {function.get('description', '').strip()}")
    return "\n".join(lines)


VIDEO_FILE = re.compile(r"[\w.-]+\.(?:mp4|avi|mkv|mov|webm|m4v|mpg|mpeg)\b", re.IGNORECASE)


GENERIC = frozenset({"frame", "frames", "video", "videos", "clip", "clips", "camera", "footage", "test", "train",
                     "normal", "scene", "part"})  # words that name no particular video


def _name_tokens(path: str) -> set[str]:
    stem = Path(path).stem.lower()
    return {token for token in re.split(r"[^a-z0-9]+", stem) if token and token not in GENERIC}


HALF = re.compile(r"\b(first|second|last)\s+half\b", re.IGNORECASE)
LAST = re.compile(r"\blast\s+(\d+(?:\.\d+)?|ten|twenty|thirty|forty|fifty|sixty)\s*"
                  r"(s|sec|secs|seconds?|min|minutes?)\b", re.IGNORECASE)
NUMBER_WORDS = {"ten": 10, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60}


@dataclass(frozen=True)
class Hints:
    """What the person's message says that a small model gets wrong, spelled out (:func:`read_message`)."""

    times: list[str] = field(default_factory=list)  # "1:05 = 65 s"
    missing: list[str] = field(default_factory=list)  # video files named that do not exist
    named: list[str] = field(default_factory=list)  # listed videos a word names
    ranges: list[str] = field(default_factory=list)  # "second half of vtest.avi = 39.8 to 79.5 s"

    def lines(self) -> list[str]:
        return [line for line in (
            "Times: " + ", ".join(self.times) if self.times else "",
            "Not among the videos: " + ", ".join(self.missing) if self.missing else "",
            "Video named: " + ", ".join(self.named) if self.named else "",
            "; ".join(self.ranges)) if line]

    @property
    def no_such_video(self) -> bool:
        """The message names a video file that does not exist and no video that does: nothing to run."""
        return bool(self.missing) and not self.named


def _ranges(message: str, videos: list[str], durations: dict[str, float]) -> list[str]:
    """``the second half`` or ``the last 10 seconds`` of the one named video, in seconds."""
    known = [(path, durations[path]) for path in videos if durations.get(path)]
    if len(known) != 1:
        return []
    path, length = known[0]
    name, ranges = Path(path).name, []
    for match in HALF.finditer(message):
        start, end = (0.0, length / 2) if match.group(1).lower() == "first" else (length / 2, length)
        ranges.append(f"{match.group(0)} of {name} = start_s {start:g}, end_s {end:g}")
    for match in LAST.finditer(message):
        amount = NUMBER_WORDS.get(match.group(1).lower()) or float(match.group(1))
        seconds = amount * (60 if match.group(2).lower().startswith("min") else 1)
        ranges.append(f"{match.group(0)} of {name} = start_s {max(0.0, length - seconds):g}, end_s {length:g}")
    return ranges


def read_message(message: str, inventory: Inventory | None) -> Hints:
    """What the step needs spelled out from the person's message: clock times in seconds (``1:05``
    is 65 s), video files it names that do not exist (the schema's video enum would otherwise make
    the model pick another video), the listed video that a word of the message names
    (``GoldenEye`` names ``xd_GoldenEye_frames.mp4``: the word starts a part of exactly one video's
    file name), and a half or the last seconds of that video as a range in seconds (from its
    length)."""
    times = [f"{shown} = {seconds:g} s" for shown, seconds in clock_times(message)]
    if inventory is None:
        return Hints(times=times)
    listed = {Path(path).name.lower() for path in inventory.videos}
    missing = [name for name in dict.fromkeys(VIDEO_FILE.findall(message)) if name.lower() not in listed]
    named: list[str] = []
    tokens = {path: _name_tokens(path) for path in inventory.videos}
    for word in {w for w in re.findall(r"[a-z0-9]+", message.lower()) if len(w) >= 4 and w not in GENERIC}:
        matches = [path for path, parts in tokens.items() if any(part.startswith(word) for part in parts)]
        if len(matches) == 1 and matches[0] not in named:
            named.append(matches[0])
    named.sort()
    return Hints(times=times, missing=missing, named=named, ranges=_ranges(message, named, inventory.durations))


def step_hints(message: str, inventory: Inventory | None) -> list[str]:
    """The lines of :func:`read_message`."""
    return read_message(message, inventory).lines()


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the person's last message ("" when there is none)."""
    return next((message.get("content") or "" for message in reversed(messages) if message["role"] == "user"), "")


def with_hints(messages: list[dict[str, Any]], inventory: Inventory | None) -> list[dict[str, Any]]:
    """``messages`` with the :func:`step_hints` of the person's last message added to it."""
    rest = list(messages)
    for position in range(len(rest) - 1, -1, -1):
        if rest[position]["role"] == "user":
            hints = step_hints(rest[position].get("content") or "", inventory)
            if hints:
                rest[position] = {**rest[position], "content": f"{rest[position]['content']}\n({'; '.join(hints)})"}
            break
    return rest


def step_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                  inventory: Inventory | None = None) -> list[dict[str, Any]]:
    """``messages`` (system first) with the step instructions added to the system message and the
    :func:`step_hints` of the person's last message added to it. The answer is written after the
    same beginning (:func:`answer_messages`), so llama.cpp reuses its cached prompt for it."""
    instructions = load_prompt("investigate.step").messages(tools=tool_menu(tools), message="")[0]["content"]
    system, *rest = messages
    return [{"role": "system", "content": f"{system['content']}\n\n{instructions}"}, *with_hints(rest, inventory)]


def answer_messages(messages: list[dict[str, Any]], *, lead: str = "", note: str = "") -> list[dict[str, Any]]:
    """``messages`` for writing the answer after schema steps: the tool calls and results of the
    conversation as plain text (a small model shown JSON calls keeps writing JSON calls instead of
    an answer), ending with the request to answer in plain sentences: from the results
    (:data:`ANSWER_REQUEST`; ``lead``, the results' headline that the answer starts with, is not to
    be repeated), or, when no tool ran, without claiming to have seen anything (:data:`NO_TOOL_REQUEST`).
    ``note`` is added to the request (a video that does not exist)."""
    plain: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = "; ".join(f"{call['function']['name']}({call['function']['arguments']})"
                              for call in message["tool_calls"])
            plain.append({"role": "assistant", "content": f"I ran {calls}."})
        elif message["role"] == "tool":
            plain.append({"role": "user", "content": f"Result of {message.get('name', 'the tool')}:\n"
                          f"{message['content']}"})
        else:
            plain.append({"role": message["role"], "content": message.get("content") or ""})
    if len(plain) > 1 and plain[-1]["role"] == "user":
        results = plain[-1]["content"].startswith("Result of ")
        request = ANSWER_REQUEST if results else NO_TOOL_REQUEST
        if results and lead:
            request += f' I already read this line above your answer, so do not repeat it: "{lead}"'
        plain.append({"role": "user", "content": f"{request} {note}".strip()})
    merged: list[dict[str, Any]] = []
    for message in plain:  # consecutive user turns as one (chat templates expect alternation)
        if merged and merged[-1]["role"] == message["role"] == "user":
            merged[-1] = {"role": "user", "content": f"{merged[-1]['content']}\n\n{message['content']}"}
        else:
            merged.append(message)
    return merged


ANSWER_REQUEST = ("Now answer my question in a few plain sentences, not JSON, from these results only: cite times, "
                  "frames, rules and file paths from them, name every item when I asked for a list, and say so if "
                  "they do not answer it.")
NO_TOOL_REQUEST = ("Now answer me in a few plain sentences, not JSON. No tool was run for this message, so say nothing "
                   "about what a video shows.")


def missing_video_note(hints: Hints, inventory: Inventory | None) -> str:
    """For an answer to a message about a video that does not exist: say so and name those that do."""
    if not hints.no_such_video:
        return ""
    videos = ", ".join(Path(path).name for path in (inventory.videos if inventory else [])[:15]) or "none"
    return (f"There is no video {', '.join(hints.missing)} in the data folders, so nothing was run: tell me so "
            f"and name the videos there are ({videos}).")


def decide_step(runtime: Runtime, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *,
                max_tokens: int, inventory: Inventory | None = None) -> ToolCall | None:
    """The next step: a tool call, or None to answer. ``messages`` start with the system message. A
    message about a video that does not exist is answered without a step (the schema's video enum
    would make the model run some other video)."""
    if messages[-1]["role"] == "user" and read_message(last_user_text(messages), inventory).no_such_video:
        return None
    step = runtime.gateway.structured_json(step_messages(messages, tools, inventory), step_schema(tools, inventory),
                                           max_tokens=max_tokens, temperature=0.0)
    if step["tool"] == ANSWER:
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=step["tool"], arguments=dict(step.get("arguments") or {}))
