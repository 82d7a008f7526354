"""The ``investigate`` graph: a tool-calling agent over Sleuth's graphs, with confirmations.

    agent -> (tool calls?) -> tools -> agent -> ... -> answer

- **agent**: one streamed LLM call through the gateway with the tools' JSON schemas. Text is
  streamed to the person as it comes (``custom`` stream events), except text that is a tool call
  written out by a small model. On the embedded llama.cpp endpoint (``tool_mode``) the step is
  first decided under a JSON schema built from the tools (:mod:`.decide`: a real tool with valid
  arguments, or "answer"), and only an answer is streamed. After ``max_steps`` tool rounds the
  tools are withheld, so the model must answer. The answer starts with the last result's **lead**,
  a headline written by code (detect's span and events, a range's scores, search's best match), and
  a turn whose tools only listed what exists or stored a calibration answers with their results as
  they are (``Tool.verbatim``): a small model retelling a list drops items and adds others.
- **tools**: runs the calls of the last assistant message. A tool that changes stored state or
  starts a long job first pauses the graph with ``interrupt()`` and runs only if the person
  approves (``Command(resume={"approved": True})``); a declined call is reported to the model.
  Tool errors (a missing video, an uncalibrated scene) go back to the model as text.

Messages are OpenAI-style dicts, so threads checkpoint as plain JSON (SQLite or Postgres).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import ValidationError
from sleuth import telemetry
from sleuth.agents.faithfulness import RepeatStop
from sleuth.datapaths import chat_dir
from sleuth.errors import SleuthError, StructuredOutputError
from sleuth.graphs.investigate.configuration import InvestigateConfig
from sleuth.graphs.investigate.decide import (
    Inventory,
    answer_messages,
    decide_step,
    last_user_text,
    missing_video_note,
    read_message,
    step_messages,
    use_schema,
)
from sleuth.graphs.investigate.tools import TOOLS, ToolContext, ToolOutput, answer_lead, verbatim_answer
from sleuth.graphs.runtime import Runtime
from sleuth.llm.gateway import ChatResult
from sleuth.prompts import load_prompt


@dataclass(frozen=True)
class Snapshot:
    """What exists now: the system prompt's text and the inventory behind the step schema's enums."""

    text: str
    inventory: Inventory | None = None


Context = Callable[[], "str | Snapshot"]  # a fixed text (tests, benchmarks) or a fresh snapshot per turn


class InvestigateState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    files: Annotated[list[str], operator.add]
    steps: int  # tool rounds since the person's last message
    thread_id: str


def system_message(context: str) -> dict[str, Any]:
    return load_prompt("investigate.system").messages(context=context, message="")[0]


def tool_schemas() -> list[dict[str, Any]]:
    return [tool.schema() for tool in TOOLS.values()]


def _looks_like_a_call(head: str) -> bool:
    return head.lstrip().startswith(("<tool_call", "{", "```", "[{"))


def stream_agent_turn(runtime: Runtime, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                      max_tokens: int, emit: Callable[[str], None], known: str = "") -> ChatResult:
    """One model call; ``emit`` gets the answer's text as it streams, a sentence at a time (tool-call
    text is held back). A sentence that repeats an earlier one ends the answer there and stops the
    model; one that only restates ``known`` (the lead shown above) is left out
    (:class:`~sleuth.agents.faithfulness.RepeatStop`)."""
    head, streaming, result = "", None, None
    guard = RepeatStop(known)
    stream = runtime.gateway.stream_chat(messages, tools=tools, max_tokens=max_tokens)
    for piece in stream:
        if isinstance(piece, ChatResult):
            result = piece
            continue
        if streaming is None:
            head += piece
            if len(head.strip()) >= 12:
                streaming = not _looks_like_a_call(head)
                if streaming:
                    emit(guard.feed(head))
        elif streaming:
            emit(guard.feed(piece))
        if guard.stopped:
            stream.close()  # the model is looping: stop it
            break
    if streaming:
        emit(guard.finish())
    if result is None:  # stopped early: what was shown is the answer
        records = runtime.gateway.usage.records
        assert guard.stopped and records
        return ChatResult(text=guard.text, tool_calls=[], finish_reason="repetition", record=records[-1])
    if streaming is None and head.strip() and not result.tool_calls and not _looks_like_a_call(head):
        emit(head)  # a short answer that never reached the 12 characters
    return dataclasses.replace(result, text=guard.text) if streaming else result


def _for_model(message: dict[str, Any]) -> dict[str, Any]:
    """A message as an endpoint takes it (a tool message's ``lead`` is the graph's own)."""
    return {key: value for key, value in message.items() if key != "lead"}


def current_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages since the person's last one."""
    for position in range(len(messages) - 1, -1, -1):
        if messages[position]["role"] == "user":
            return messages[position + 1:]
    return list(messages)


def _call_key(name: str, arguments: str) -> str:
    """What makes two calls the same: all their arguments, or only the video for a tool that runs
    once a turn (``Tool.once``: the 1.5B re-ran explain with another event after a detect)."""
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return name + arguments
    if name in TOOLS and TOOLS[name].once and isinstance(parsed, dict):
        parsed = {"video": parsed.get("video")}
    return name + json.dumps(parsed, sort_keys=True)


def fallback_answer(turn: list[dict[str, Any]], *, lead: bool = False) -> str:
    """When the model gives no answer text: what the tools of this turn returned, verbatim (after a
    ``lead``, the headline shown already, only the rest is said to be from the tools)."""
    results = [f"{message.get('name', 'tool')}: {message['content']}" for message in turn if message["role"] == "tool"]
    if not results:
        return "I could not produce an answer; please rephrase the question."
    return ("The model gave no summary; here is what the tools returned.\n" if not lead else
            "The tools returned:\n") + "\n".join(results)


def build_graph(runtime: Runtime, config: InvestigateConfig | None = None, *, context: Context,
                files_root: Path | None = None, checkpointer: Any = None, agent_runtime: Runtime | None = None) -> Any:
    """The graph; ``agent_runtime`` (default ``runtime``) makes the agent's own LLM calls, ``runtime``
    runs the tools."""
    config = config or InvestigateConfig()
    files_root = files_root or chat_dir(runtime.settings)
    thinker = agent_runtime or runtime
    schema_steps = use_schema(thinker, config.tool_mode)

    @telemetry.traced_agent("investigate_agent")
    def agent(state: InvestigateState) -> dict[str, Any]:
        writer = get_stream_writer()
        turn = current_turn(state["messages"])
        now = context()
        snapshot = now if isinstance(now, Snapshot) else Snapshot(text=now)
        messages = [system_message(snapshot.text), *(_for_model(message) for message in state["messages"])]
        tools = tool_schemas() if state.get("steps", 0) < config.max_steps else None

        lead = answer_lead(turn)  # the results' headline, written by code: the answer starts with it

        def ask(tools: list[dict[str, Any]] | None) -> ChatResult:
            chat = messages
            if tools is None:
                if lead:
                    writer({"type": "token", "text": lead + "\n\n"})
                if schema_steps:  # after the steps' own beginning, which llama.cpp has cached
                    note = "" if turn else missing_video_note(read_message(last_user_text(messages),
                                                                           snapshot.inventory), snapshot.inventory)
                    chat = answer_messages(step_messages(messages, tool_schemas(), snapshot.inventory), lead=lead,
                                           note=note)
            return stream_agent_turn(thinker, chat, tools=tools, max_tokens=config.max_tokens,
                                     emit=lambda text: writer({"type": "token", "text": text}),
                                     known=lead if tools is None else "")

        made = {_call_key(call["function"]["name"], call["function"]["arguments"])
                for message in turn for call in message.get("tool_calls") or []}
        if schema_steps and tools:
            try:
                step = decide_step(thinker, messages, tools, max_tokens=config.step_tokens,
                                   inventory=snapshot.inventory)
            except StructuredOutputError:
                step = None  # no valid step even under the schema: answer from what there is
            calls = [step] if step is not None and _call_key(step.name, json.dumps(step.arguments)) not in made else []
            listed = None if calls else verbatim_answer(turn)
            if listed is not None:  # only lists of what exists, or what was stored: they answer as they are
                writer({"type": "token", "text": listed})
                return {"messages": [{"role": "assistant", "content": listed}]}
            result = None if calls else ask(None)  # a repeated call counts as "answer" too
        else:
            result = ask(tools)
            if result.tool_calls and all(_call_key(c.name, json.dumps(c.arguments)) in made
                                         for c in result.tool_calls):
                result = ask(None)  # a small model repeating a call it already made: make it answer instead
            calls = list(result.tool_calls)
        if calls:
            return {"messages": [{"role": "assistant", "content": "", "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.name,
                                                                 "arguments": json.dumps(call.arguments)}}
                for call in calls[:3]]}]}
        assert result is not None
        text = result.text.strip()
        if _looks_like_a_call(text) or not (text or lead):
            text = fallback_answer(turn, lead=bool(lead))
            writer({"type": "token", "text": text})
        if lead and not result.tool_calls:  # the lead alone when the model only restated it
            text = f"{lead}\n\n{text}".strip()
        return {"messages": [{"role": "assistant", "content": text}]}

    def route(state: InvestigateState) -> str:
        return "tools" if state["messages"][-1].get("tool_calls") else END

    @telemetry.traced_agent("investigate_tools")
    def tools(state: InvestigateState) -> dict[str, Any]:
        writer = get_stream_writer()
        thread = state.get("thread_id") or "default"
        ctx = ToolContext(runtime=runtime, files_dir=files_root / thread,
                          progress=lambda stage, done, total: writer({"type": "progress", "stage": stage,
                                                                     "done": done, "total": total}))
        replies, files = [], []
        for call in state["messages"][-1]["tool_calls"]:
            name = call["function"]["name"]
            output = run_tool_call(name, call["function"]["arguments"], ctx, config, writer)
            files += output.files
            reply = {"role": "tool", "tool_call_id": call["id"], "name": name,
                     "content": output.text[:config.tool_result_chars]}
            replies.append({**reply, "lead": output.lead} if output.lead else reply)
        return {"messages": replies, "files": files, "steps": state.get("steps", 0) + 1}

    graph = StateGraph(InvestigateState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def run_tool_call(name: str, raw_arguments: str, ctx: ToolContext, config: InvestigateConfig,
                  writer: Callable[[dict[str, Any]], None]) -> ToolOutput:
    """The tool's text for the model, the files it wrote and its lead; asks for approval first where needed."""
    tool = TOOLS.get(name)
    if tool is None:
        return ToolOutput(f"error: there is no tool '{name}'; the tools are {', '.join(TOOLS)}")
    try:
        arguments = json.loads(raw_arguments or "{}")
        args = tool.args.model_validate(arguments)
    except (json.JSONDecodeError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        return ToolOutput(f"error: bad arguments for {name}: {where}: "
                          f"{str(first['msg']).removeprefix('Value error, ')}")
    if tool.confirm and config.confirm:
        decision = interrupt({"tool": name, "args": args.model_dump(), "question": tool.question(args)})
        if not (isinstance(decision, dict) and decision.get("approved")):
            return ToolOutput(f"The person declined to run {name}. Do not run it; ask what they would like instead.")
    writer({"type": "tool_start", "tool": name, "args": args.model_dump(exclude_none=True)})
    started = time.monotonic()
    try:
        with telemetry.tool_span(name):
            output = tool.run(ctx, args)
    except SleuthError as exc:
        output = ToolOutput(f"error: {exc.one_line()}")
    writer({"type": "tool_end", "tool": name, "result": output.text[:400], "files": output.files,
            "seconds": round(time.monotonic() - started, 2)})
    return output
