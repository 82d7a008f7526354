"""The ``search`` graph (AnomalyLMM): a text query in, ranked gallery items with evidence out.

    retrieve -> generate_cloze -> complete (one branch per top-N candidate, LangGraph Send)
             -> compare -> fuse

- **retrieve**: the retriever embeds the query and the gallery (Qdrant) returns the top-K items
  by cosine similarity S1 on the retriever's named vector (``image`` for a CLIP-family model,
  ``caption`` for the embedded caption-text default).
- **generate_cloze**: the query's action verbs and colours become numbered slots.
- **complete**: the best ``top_n`` candidates are completed in parallel branches, each from its
  crop (a VLM) or its description (the LLM).
- **compare**: each filled word is compared with the query's word (semantic equivalence).
- **fuse**: candidates ranked by matched slots (ties share a rank n) get ``a2*beta**n`` on top of
  ``a1*S1``; the rest keep ``a1*S1``.

With re-ranking off (``top_n`` 0), or a query without verbs and colours, retrieve goes straight to
fuse and the result is the retrieval order.

Input ``{"query": "...", "gallery": NAME}`` (:class:`SearchInput`), output ``{"results": [...],
"hits": [...], "cloze": {...}, "retriever": "..."}`` (:class:`SearchOutput`); the settings
(:class:`SearchConfig`) are the run's context, by default the ones the graph was built with. An
empty query or a gallery that does not exist is a one-line error before any model call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from sleuth import telemetry
from sleuth.agents.cloze import Cloze, Completion, compare, complete_cloze, fuse, generate_cloze, rank_positions
from sleuth.errors import ConfigError, SleuthError
from sleuth.graphs.context import run_settings
from sleuth.graphs.reducers import merge_dicts
from sleuth.graphs.runtime import Runtime
from sleuth.graphs.search.configuration import SearchConfig
from sleuth.graphs.search.state import RankedItem, SearchResult
from sleuth.memory.gallery import GalleryItem, GalleryStore, item_image
from sleuth.tools.captioners.vlm_litellm import jpeg_bytes

Progress = Callable[[str, int, int], None]


class SearchInput(TypedDict):
    """What the graph is given: a description of who or what to find, and the gallery to search."""

    query: str
    gallery: str


class SearchOutput(TypedDict, total=False):
    """What the graph returns: ``results`` (:class:`RankedItem` as JSON, fused order), ``hits`` (the
    retrieval order with S1), the query's ``cloze`` and the ``retriever`` used."""

    results: list[dict[str, Any]]
    hits: list[dict[str, Any]]
    cloze: dict[str, Any] | None
    retriever: str


class SearchState(TypedDict, total=False):
    query: str
    gallery: str
    retriever: str
    hits: list[dict[str, Any]]  # {"item": GalleryItem, "s1": float} in retrieval order
    cloze: dict[str, Any] | None
    completions: Annotated[dict[str, dict[str, Any]], merge_dicts]  # item id -> Completion
    results: list[dict[str, Any]]  # RankedItem, fused order


class CompleteTask(TypedDict):
    """What one ``complete`` branch gets through ``Send``."""

    cloze: dict[str, Any]
    hit: dict[str, Any]


def completion_mode(config: SearchConfig, runtime: Runtime) -> str:
    if config.completion != "auto":
        return config.completion
    if runtime.settings.vlm.model:
        return "vlm"
    if runtime.settings.tools.captioner.kind == "transformers":
        return "local-vlm"
    return "description"


def build_graph(runtime: Runtime, store: GalleryStore, config: SearchConfig | None = None, *,
                progress: Progress | None = None) -> Any:
    default = config or SearchConfig()
    completed: list[str] = []
    expected = [0]  # branches dispatched, for progress

    def settings() -> SearchConfig:
        return run_settings(SearchConfig, default)

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    def local_vlm() -> Any:
        captioner = runtime.toolset().captioner
        if not hasattr(captioner, "ask"):
            raise ConfigError("cloze completion with a local VLM needs the transformers captioner in this process",
                              hint="set tools.backend to 'inprocess', or set vlm.model to a vision endpoint")
        return captioner

    @telemetry.traced_agent("retrieve")
    def retrieve(state: SearchState) -> dict[str, Any]:
        config = settings()
        query = " ".join(str(state.get("query") or "").split())
        if not query:
            raise SleuthError("the search query is empty", hint='describe who or what to find, e.g. "a man running"')
        if not store.exists(state["gallery"]):
            raise store.not_found(state["gallery"])
        retriever = runtime.toolset().retriever
        query_vector = retriever.embed_queries([query])[0]
        hits = store.search(state["gallery"], retriever.vector, query_vector, limit=config.top_k,
                            kinds=config.kinds, model=retriever.name)
        report("retrieve", 1, 1)
        return {"query": query, "hits": [{"item": hit.item.model_dump(), "s1": hit.score} for hit in hits],
                "retriever": f"{retriever.name} ({retriever.vector} vectors)", "completions": {}, "cloze": None}

    def after_retrieve(state: SearchState) -> str:
        return "generate_cloze" if state["hits"] and settings().top_n > 0 else "fuse"

    @telemetry.traced_agent("generate_cloze")
    def generate(state: SearchState) -> dict[str, Any]:
        cloze = generate_cloze(state["query"], gateway=runtime.gateway)
        report("cloze", 1, 1)
        return {"cloze": cloze.model_dump()}

    def dispatch(state: SearchState) -> list[Send] | str:
        cloze = state.get("cloze") or {}
        if not cloze.get("slots"):
            return "fuse"
        top_n = settings().top_n
        expected[0] = len(state["hits"][:top_n])
        return [Send("complete", CompleteTask(cloze=cloze, hit=hit)) for hit in state["hits"][:top_n]]

    @telemetry.traced_agent("complete_cloze")
    def complete(task: CompleteTask) -> dict[str, Any]:
        config = settings()
        mode = completion_mode(config, runtime)
        cloze = Cloze.model_validate(task["cloze"])
        item = GalleryItem.model_validate(task["hit"]["item"])
        options: dict[str, Any] = {"description": item.caption}
        if mode in ("vlm", "local-vlm"):
            crop = item_image(item)
            if mode == "vlm":
                options["image"] = jpeg_bytes(crop, quality=90, max_width=config.image_width)
            else:
                options.update(local_vlm=local_vlm(), crop=crop)
        completion = complete_cloze(cloze, item.id, gateway=runtime.gateway, **options)
        completed.append(item.id)
        report("complete", len(completed), expected[0])
        return {"completions": {item.id: completion.model_dump()}}

    @telemetry.traced_agent("compare")
    def compare_node(state: SearchState) -> dict[str, Any]:
        cloze = Cloze.model_validate(state["cloze"])
        ids = [hit["item"]["id"] for hit in state["hits"][:settings().top_n]]
        completions = [Completion.model_validate(state["completions"][item_id]) for item_id in ids]
        compared = compare(cloze, completions, gateway=runtime.gateway)
        return {"completions": {completion.item_id: completion.model_dump() for completion in compared}}

    @telemetry.traced_agent("fuse")
    def fuse_node(state: SearchState) -> dict[str, Any]:
        config = settings()
        completions = {key: Completion.model_validate(value) for key, value in (state.get("completions") or {}).items()}
        ranks = rank_positions({key: completion.matched for key, completion in completions.items()})
        ranked = []
        for hit in state["hits"]:
            item_id = hit["item"]["id"]
            rank = ranks.get(item_id)
            ranked.append(RankedItem(item=GalleryItem.model_validate(hit["item"]), s1=hit["s1"], rank=rank,
                                     score=fuse(hit["s1"], rank, a1=config.a1, a2=config.a2, beta=config.beta),
                                     completion=completions.get(item_id)))
        ranked.sort(key=lambda entry: -entry.score)  # stable: ties keep the retrieval order
        return {"results": [entry.model_dump() for entry in ranked]}

    graph = StateGraph(SearchState, context_schema=SearchConfig, input_schema=SearchInput, output_schema=SearchOutput)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate_cloze", generate)
    graph.add_node("complete", complete)
    graph.add_node("compare", compare_node)
    graph.add_node("fuse", fuse_node)
    graph.add_edge(START, "retrieve")
    graph.add_conditional_edges("retrieve", after_retrieve, ["generate_cloze", "fuse"])
    graph.add_conditional_edges("generate_cloze", dispatch, ["complete", "fuse"])
    graph.add_edge("complete", "compare")
    graph.add_edge("compare", "fuse")
    graph.add_edge("fuse", END)
    return graph.compile()


def search(query: str, gallery: str, *, runtime: Runtime, config: SearchConfig | None = None,
           store: GalleryStore | None = None, progress: Progress | None = None) -> SearchResult:
    """Run the ``search`` graph once; ``store``: an open gallery store to reuse across queries."""
    query = " ".join(query.split())
    if not query:  # before a store opens (the graph checks it too, for LangGraph Server)
        raise SleuthError("the search query is empty", hint='describe who or what to find, e.g. "a man running"')
    own_store = store is None
    store = store or GalleryStore(runtime.settings)
    started, first_record = time.monotonic(), len(runtime.gateway.usage.records)
    try:
        with telemetry.agent_span("search"):
            state = build_graph(runtime, store, config, progress=progress).invoke(
                {"query": query, "gallery": gallery}, context=config or SearchConfig())
    finally:
        if own_store:
            store.close()
    records = runtime.gateway.usage.records[first_record:]
    results = [RankedItem.model_validate(entry) for entry in state.get("results") or []]
    by_id = {entry.item.id: entry for entry in results}
    return SearchResult(
        query=query, gallery=gallery, retriever=state.get("retriever", ""),
        cloze=Cloze.model_validate(state["cloze"]) if state.get("cloze") else None, results=results,
        retrieval=[by_id[hit["item"]["id"]] for hit in state.get("hits") or []],
        llm_calls=len(records), prompt_tokens=sum(r.prompt_tokens for r in records),
        completion_tokens=sum(r.completion_tokens for r in records), seconds=round(time.monotonic() - started, 3))
