"""A conversation with the investigate agent, as a stream of :class:`ChatEvent` for any front end.

``sleuth chat``, the web chat and the HTTP API all drive the graph through :class:`Investigator`:
``send`` a message (or ``resume`` a pending confirmation) and render the events it yields:
tokens as the model writes, tool steps with the files they wrote, then exactly one ``answer``,
``interrupt`` (the agent waits for approval) or ``error`` event. Threads live in the runtime's
checkpointer, so a thread id resumes a conversation in a later process.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from langgraph.types import Command
from pydantic import BaseModel, Field
from sleuth.errors import SleuthError
from sleuth.graphs.investigate.configuration import InvestigateConfig
from sleuth.graphs.investigate.decide import MAX_ENUM, Inventory, ToolMode, decide_step, use_schema
from sleuth.graphs.investigate.graph import Snapshot, build_graph, stream_agent_turn, system_message, tool_schemas
from sleuth.graphs.runtime import Runtime


class ChatEvent(BaseModel):
    type: Literal["token", "tool_start", "tool_end", "progress", "interrupt", "answer", "error"]
    thread_id: str
    text: str = ""
    tool: str | None = None
    args: dict[str, Any] | None = None
    result: str | None = None
    files: list[str] = Field(default_factory=list)
    progress: dict[str, Any] | None = None  # progress: {"stage", "done", "total"} of a running tool


def default_context(runtime: Runtime, videos: int = 15) -> Snapshot:
    """What exists now: the system prompt's lines (scenes, galleries, up to ``videos`` videos with
    their lengths, data folders) and the :class:`Inventory` that the step schema's enums come from."""
    from sleuth.datapaths import allowed_roots
    from sleuth.graphs.investigate.tools import find_videos
    from sleuth.memory.scenes import SceneStore

    lines, inventory = [], Inventory()
    try:
        inventory.scenes = SceneStore(runtime.settings).scenes()
        lines.append("Scenes: " + (", ".join(inventory.scenes) or "none calibrated yet"))
    except (SleuthError, OSError):
        lines.append("Scenes: unknown")
    try:
        from sleuth.memory.gallery import GalleryStore

        with GalleryStore(runtime.settings) as store:
            inventory.galleries = store.names()
        lines.append("Galleries: " + (", ".join(inventory.galleries) or "none"))
    except SleuthError:
        lines.append("Galleries: unknown")
    roots = allowed_roots(runtime.settings)
    inventory.videos = find_videos(roots, MAX_ENUM + 1)
    inventory.durations = {path: seconds for path in inventory.videos[:videos]
                           if (seconds := _length(path)) is not None}
    lines.append("Videos: " + (", ".join(_with_duration(path, inventory.durations.get(path))
                                         for path in inventory.videos[:videos]) or "none found"))
    lines.append("Data folders: " + ", ".join(str(root) for root in roots))
    return Snapshot(text="\n".join(lines), inventory=inventory)


def _with_duration(path: str, seconds: float | None) -> str:
    """``path (79.5 s)``: the model needs a video's length for "the second half" or "the last ten
    seconds"; a file that cannot be read is listed as it is (the tool will say why)."""
    return path if seconds is None else f"{path} ({seconds:.1f} s)"


def _length(path: str) -> float | None:
    try:
        return _duration(path, Path(path).stat().st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=512)
def _duration(path: str, mtime_ns: int) -> float | None:  # the context is rebuilt every step
    from sleuth.tools.frames import FrameReader

    try:
        return FrameReader(path).info.duration_s
    except (SleuthError, OSError, ValueError):
        return None


class Investigator:
    """The investigate agent over the runtime's checkpointer (SQLite by default, Postgres by URL).

    The agent's own steps and answers use ``agent_model`` (default: ``llm.agent_model``, see
    :meth:`Runtime.for_agent`); the tools it runs (detect, explain, ...) use ``runtime``'s LLM, so
    their results are those of the CLI."""

    def __init__(self, runtime: Runtime, config: InvestigateConfig | None = None, *, checkpointer: Any = None,
                 context: str | None = None, files_root: Path | None = None,
                 agent_model: str | None = None) -> None:
        self.runtime = runtime
        self.agent_runtime = runtime.for_agent(agent_model)
        self.config = config or InvestigateConfig()
        self.checkpointer = checkpointer if checkpointer is not None else runtime.checkpointer
        if self.checkpointer is None:
            from langgraph.checkpoint.memory import InMemorySaver

            self.checkpointer = InMemorySaver()
        fixed = context

        def context_now() -> str | Snapshot:
            return fixed if fixed is not None else default_context(runtime, self.config.context_videos)

        self.graph = build_graph(runtime, self.config, context=context_now, files_root=files_root,
                                 checkpointer=self.checkpointer, agent_runtime=self.agent_runtime)

    @staticmethod
    def new_thread() -> str:
        return uuid.uuid4().hex[:12]

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 4 * self.config.max_steps + 8}

    def send(self, thread_id: str, text: str, *, attachments: Sequence[str] = ()) -> Iterator[ChatEvent]:
        """One message from the person; see the module doc for the events."""
        text = text.strip()
        if not text:
            yield ChatEvent(type="error", thread_id=thread_id, text="the message is empty")
            return
        if self.pending(thread_id) is not None:
            yield ChatEvent(type="error", thread_id=thread_id,
                            text="this thread waits for a confirmation: approve or decline it first")
            return
        if attachments:
            text += "\nAttached video(s): " + ", ".join(attachments)
        update = {"messages": [{"role": "user", "content": text}], "steps": 0, "thread_id": thread_id}
        yield from self._run(thread_id, update)

    def resume(self, thread_id: str, approved: bool) -> Iterator[ChatEvent]:
        """Answer the pending confirmation of ``thread_id``."""
        if self.pending(thread_id) is None:
            yield ChatEvent(type="error", thread_id=thread_id, text="nothing in this thread waits for a confirmation")
            return
        yield from self._run(thread_id, Command(resume={"approved": approved}))

    def _run(self, thread_id: str, graph_input: Any) -> Iterator[ChatEvent]:
        files: list[str] = []
        try:
            for mode, chunk in self.graph.stream(graph_input, self._config(thread_id),
                                                 stream_mode=["custom", "updates"]):
                if mode == "custom":
                    event = self._custom(thread_id, chunk)
                    files += event.files if event.type == "tool_end" else []
                    yield event
                elif "__interrupt__" in chunk:
                    yield self._interrupt(thread_id, chunk["__interrupt__"][0].value)
                    return
        except SleuthError as exc:
            yield ChatEvent(type="error", thread_id=thread_id, text=exc.one_line())
            return
        messages = self.messages(thread_id)
        answer = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        yield ChatEvent(type="answer", thread_id=thread_id, text=answer, files=files)

    @staticmethod
    def _custom(thread_id: str, chunk: dict[str, Any]) -> ChatEvent:
        kind = chunk.get("type")
        if kind == "token":
            return ChatEvent(type="token", thread_id=thread_id, text=chunk["text"])
        if kind == "progress":
            return ChatEvent(type="progress", thread_id=thread_id, progress={key: chunk[key] for key in
                                                                             ("stage", "done", "total")})
        if kind == "tool_start":
            return ChatEvent(type="tool_start", thread_id=thread_id, tool=chunk["tool"], args=chunk["args"])
        return ChatEvent(type="tool_end", thread_id=thread_id, tool=chunk.get("tool"), result=chunk.get("result"),
                         files=list(chunk.get("files") or []))

    @staticmethod
    def _interrupt(thread_id: str, value: dict[str, Any]) -> ChatEvent:
        return ChatEvent(type="interrupt", thread_id=thread_id, text=value.get("question", "Continue?"),
                         tool=value.get("tool"), args=value.get("args"))

    def pending(self, thread_id: str) -> ChatEvent | None:
        state = self.graph.get_state(self._config(thread_id))
        interrupts = getattr(state, "interrupts", ()) or ()
        return self._interrupt(thread_id, interrupts[0].value) if interrupts else None

    def messages(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages as the graph keeps them: the person's, the steps with their tool
        calls, the tool results (with their leads) and the answers; for programs that check what the
        agent did (the chat suite)."""
        return list(self.graph.get_state(self._config(thread_id)).values.get("messages") or [])

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages for display: user, assistant (answers) and tool results."""
        shown = []
        for message in self.messages(thread_id):
            if message["role"] == "assistant" and not message.get("content"):
                continue  # a tool-call step
            shown.append({"role": message["role"], "content": message.get("content") or "",
                          **({"name": message["name"]} if message.get("name") else {})})
        return shown


def first_tool_call(question: str, *, runtime: Runtime, context: str, max_tokens: int = 256,
                    tool_mode: ToolMode = "auto",
                    inventory: Inventory | None = None) -> tuple[str | None, dict[str, Any], float | None, float]:
    """The agent's first step for ``question`` (benchmarks): tool name or None, its arguments,
    seconds to the first token (None for a schema-decoded step, which is not streamed), total
    seconds. Runs no tool. ``tool_mode`` as in :class:`InvestigateConfig`; ``inventory`` fills the
    step schema's enums."""
    messages = [system_message(context), {"role": "user", "content": question}]
    started = time.monotonic()
    if use_schema(runtime, tool_mode):
        step = decide_step(runtime, messages, tool_schemas(), max_tokens=max_tokens, inventory=inventory)
        seconds = time.monotonic() - started
        return (step.name, dict(step.arguments), None, seconds) if step else (None, {}, None, seconds)
    result = stream_agent_turn(runtime, messages, tools=tool_schemas(), max_tokens=max_tokens, emit=lambda _: None)
    seconds = time.monotonic() - started
    if not result.tool_calls:
        return None, {}, result.record.ttft_s, seconds
    call = result.tool_calls[0]
    return call.name, dict(call.arguments), result.record.ttft_s, seconds
