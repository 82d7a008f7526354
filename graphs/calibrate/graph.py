"""The ``calibrate`` graph: normal footage of a scene in, a trained proposer and stored rules out.

    check -> train_proposer -> caption -> induce -> store

Input ``{"sources": [PATH, ...], "scene": NAME}`` (:class:`CalibrateInput`; ``"rules"``, a
:class:`~sleuth.agents.schemas.RuleSet` as JSON, skips induction and stores those rules), output
``{"result": {...}}`` (:class:`CalibrateOutput`, a :class:`CalibrateResult` as JSON); the settings
(:class:`CalibrateConfig`: range, sampling, training, induction) are the run's context, by default
the ones the graph was built with.

- **check**: the scene name is usable and every source exists, before any model loads; otherwise
  a one-line error that says what to do.
- **train_proposer**: HyCoVAD's SSL proposer trained on every clip, saved as the scene's
  checkpoint (its held-out runs give the alarm threshold and the score percentiles ``detect``
  gates on).
- **caption**: ``caption_frames`` frames spread evenly over the footage, captioned by the
  configured captioner (with neighbouring frames as context).
- **induce**: AnomalyRuler induction over chunks of ``captions_per_call`` captions, aggregated
  (semantic de-duplication, the stricter rule wins) and made to hold on the footage: screen
  positions removed, "anomaly" rules that name only its dominant activities and objects, or that
  describe most of its captions (HyCoVAD), become normal rules.
- **store**: the rules become the scene's next version in the rule memory (or stay at the
  current version when unchanged); the rule score of the normal captions gives the scene's
  rule floor; the scene profile records all of it.

Nodes keep paths and texts in the state, never frames, so every step is checkpointed and a rerun
after an interruption skips what finished (proposer training is the long step).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from sleuth import telemetry
from sleuth.agents.rules import hold_on_normal_footage, induce_from_unlabeled, unseen_terms
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.errors import SleuthError
from sleuth.graphs.calibrate.configuration import CalibrateConfig
from sleuth.graphs.calibrate.state import CalibrateResult
from sleuth.graphs.context import run_settings
from sleuth.graphs.detect_captions import DetectConfig, detect_captions
from sleuth.graphs.runtime import Runtime
from sleuth.memory.scenes import SceneProfile, SceneStore
from sleuth.tools.captioners.windows import caption_positions
from sleuth.tools.frames import Frame, VideoError, is_stream, read_clips
from sleuth.tools.proposer import Proposer, ProposerConfig, ProposerStore, check_scene

Progress = Callable[[str, int, int], None]
GRAPH_VERSION = 2  # part of the default thread id: checkpoints of an older state layout are not resumed


class CalibrateInput(TypedDict):
    """What the graph is given: the scene's normal footage (video files, frame folders, folders of
    clips) and its name; ``rules`` (optional) are stored instead of induced."""

    sources: list[str]
    scene: str
    rules: NotRequired[dict[str, Any] | None]


class CalibrateOutput(TypedDict):
    """What the graph returns: a :class:`CalibrateResult` as JSON."""

    result: dict[str, Any]


class CalibrateState(TypedDict, total=False):
    scene: str
    sources: list[str]
    given: bool  # the input's rules are stored as they are
    proposer: dict[str, Any]
    clips: int
    frames: int
    captions: list[str]
    rules: dict[str, Any] | None
    llm_calls: int
    result: dict[str, Any]


def sample_positions(lengths: Sequence[int], count: int, margin: int) -> list[tuple[int, int]]:
    """``count`` (clip, position) pairs spread evenly over clips of ``lengths`` frames, keeping
    ``margin`` frames from each clip's ends where the clip is long enough."""
    pool = [(clip, position) for clip, length in enumerate(lengths)
            for position in range(min(margin, length // 2), max(length - margin, length // 2 + 1))]
    if not pool:
        return []
    picks = np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(int)
    return [pool[i] for i in sorted(set(picks.tolist()))]


def _score_captions(captions: Sequence[str], rules: RuleSet | None, scene: str, runtime: Runtime) -> Any:
    """Unsmoothed rule scores of ``captions`` (no LLM call: cheap rule matching only)."""
    return detect_captions(captions, video="calibration", scene=scene, rules=rules, runtime=runtime,
                           config=DetectConfig.for_video(explain_events=0, smoothing="none", llm_weight=0.0))


def demote_false_alarms(rules: RuleSet, captions: Sequence[str], runtime: Runtime, *,
                        max_share: float = 0.02) -> RuleSet:
    """Calibration footage is normal by definition, so an anomaly rule that flags more than
    ``max_share`` of its captions describes normality (small LLMs list what they see, "Walking on
    the pathway", as anomalies): it becomes a normal rule. One rule at a time, worst first, and
    the captions are rescored after each, since each demotion moves the normal side. A rule that
    names an action or object no caption mentions ("fighting") stays: its hits are the matcher's
    noise, not a description of the footage."""
    threshold = DetectConfig.for_video().threshold
    protected = {rule.text for rule in rules.anomaly if unseen_terms(rule.text, captions)}
    while rules.anomaly:
        frames = _score_captions(captions, rules, rules.scene, runtime).frames
        hits = Counter(rule for frame in frames if frame.raw_score >= threshold for rule in frame.broken_rules
                       if rule not in protected)
        worst = hits.most_common(1)
        if not worst or worst[0][1] <= max_share * len(frames):
            break
        rules = rules.model_copy(update={"rules": [
            Rule(text=rule.text, kind="normal", category=rule.category)
            if rule.kind == "anomaly" and rule.text == worst[0][0] else rule for rule in rules.rules]})
    return rules


def check_input(scene: str, sources: Sequence[str]) -> None:
    """A one-line error unless ``scene`` is a usable name and every source is there."""
    check_scene(scene)
    if not sources:
        raise SleuthError("no normal footage given", hint="pass --video with a clip of the scene's normal activity")
    missing = [source for source in sources if not is_stream(source) and not Path(source).exists()]
    if missing:
        raise VideoError(f"normal footage not found: {', '.join(missing)}",
                          hint="check the path of each --video (a file, a frame folder or a folder of clips)")


def build_graph(runtime: Runtime, config: CalibrateConfig | None = None, *, progress: Progress | None = None,
                checkpointer: Any = None) -> Any:
    """The graph; ``config`` is the default of its runs' context (:class:`CalibrateConfig`)."""
    default = config or CalibrateConfig()
    tools = runtime.toolset()

    def settings() -> CalibrateConfig:
        return run_settings(CalibrateConfig, default)

    @telemetry.traced_agent("check")
    def check(state: CalibrateState) -> dict[str, Any]:
        sources = [str(source) for source in state.get("sources") or []]
        check_input(state.get("scene", ""), sources)
        rules = state.get("rules")
        if rules is not None:
            rules = RuleSet.model_validate(rules).model_dump()  # a malformed rule set fails here, not after training
        return {"sources": sources, "rules": rules, "given": rules is not None}

    def read(state: CalibrateState) -> list[list[Frame]]:
        config = settings()
        clips, _ = read_clips(state["sources"], fps=config.fps, start=config.start, stop=config.stop)
        clips = [clip for clip in clips if clip]
        if not clips:
            raise SleuthError("the normal footage has no frames", hint="check --video, --start and --stop")
        return clips

    def calls_since(start: int) -> int:
        return len(runtime.gateway.usage.records) - start

    @telemetry.traced_agent("train_proposer")
    def train_proposer(state: CalibrateState) -> dict[str, Any]:
        config = settings()
        clips = read(state)
        frames = sum(len(clip) for clip in clips)
        if not config.train_proposer:
            return {"proposer": {}, "clips": len(clips), "frames": frames}
        overrides = {**config.proposer, **{k: v for k, v in (("epochs", config.epochs),
                                                             ("max_train_minutes", config.max_train_minutes))
                                          if v is not None}}
        proposer = Proposer(ProposerConfig(**overrides), scene=state["scene"])
        report = proposer.fit(clips, progress=progress)
        path = ProposerStore(runtime.settings).save(state["scene"], proposer)
        return {"clips": len(clips), "frames": frames,
                "proposer": {"checkpoint": str(path), "threshold": report.threshold, "seconds": report.seconds}}

    @telemetry.traced_agent("caption")
    def caption(state: CalibrateState) -> dict[str, Any]:
        config = settings()
        if not config.induce:
            return {"captions": []}
        clips = read(state)
        picks = sample_positions([len(clip) for clip in clips], config.caption_frames, config.caption_context)
        captions: list[str] = []
        for k, clip in enumerate(clips):
            positions = [position for index, position in picks if index == k]
            if positions:
                texts = caption_positions(tools.captioner, clip, positions, context=config.caption_context)
                captions.extend(texts[p] for p in positions)
            if progress:
                progress("caption", len(captions), len(picks))
        if not any(text.strip() for text in captions):
            raise SleuthError("the captioner wrote no caption for the normal footage",
                              hint="check that the footage shows the scene (sleuth score / --fps)")
        return {"captions": captions}

    @telemetry.traced_agent("induce")
    def induce(state: CalibrateState) -> dict[str, Any]:
        config = settings()
        if state.get("given"):
            return {"llm_calls": 0}
        if not config.induce:
            return {"rules": None, "llm_calls": 0}
        captions = state["captions"]
        chunks = max(1, -(-len(captions) // config.captions_per_call))
        by_chunk = {f"part{k + 1}": captions[k::chunks] for k in range(chunks)}  # each chunk spans the footage
        start = len(runtime.gateway.usage.records)
        if progress:
            progress("induce", 0, chunks)
        rules = induce_from_unlabeled(by_chunk, per_video=config.captions_per_call, scene=state["scene"],
                                      seed=config.seed, gateway=runtime.gateway, embedder=runtime.embedder)
        if progress:
            progress("induce", chunks, chunks)
        rules, _ = hold_on_normal_footage(rules, captions)  # no screen positions; normal activity is normal
        rules = demote_false_alarms(rules, captions, runtime, max_share=config.max_false_alarm_share)
        if not rules.anomaly:
            raise SleuthError(f"scene {state['scene']}: the induced rules have no anomaly rule",
                              hint="import rules with `sleuth rules import` or pass --rules")
        return {"rules": rules.model_dump(), "llm_calls": calls_since(start)}

    @telemetry.traced_agent("store")
    def store(state: CalibrateState) -> dict[str, Any]:
        scene = state["scene"]
        profiles = SceneStore(runtime.settings)
        previous = profiles.load(scene)
        version = previous.rules_version if previous else None
        floor = previous.rule_floor if previous else 0.0
        changed = False
        rules = RuleSet.model_validate(state["rules"]) if state.get("rules") else None
        if rules is not None:
            before = runtime.memory.latest_version(scene)
            version = runtime.memory.save(rules.model_copy(update={"scene": scene}), note="sleuth calibrate")
            changed = version != before
        if state.get("captions") and (rules is not None or runtime.memory.latest(scene) is not None):
            scored = _score_captions(state["captions"], rules, scene, runtime)
            floor = float(np.median([frame.raw_score for frame in scored.frames]))
        stored = runtime.memory.latest(scene)
        proposer = state.get("proposer") or {}
        profile = SceneProfile(
            scene=scene, footage=state["sources"], fps=settings().fps, frames=state["frames"],
            proposer_checkpoint=proposer.get("checkpoint") or (previous.proposer_checkpoint if previous else None),
            proposer_threshold=proposer.get("threshold", previous.proposer_threshold if previous else None),
            rules_version=version, rule_floor=floor, captioner=getattr(tools.captioner, "name", None))
        path = profiles.save(profile)
        result = CalibrateResult(
            scene=scene, clips=state["clips"], frames=state["frames"], proposer_checkpoint=profile.proposer_checkpoint,
            proposer_threshold=profile.proposer_threshold, train_seconds=proposer.get("seconds"),
            captions=len(state.get("captions") or []), rules_version=version, rules_changed=changed,
            anomaly_rules=[r.text for r in stored.anomaly] if stored else [],
            normal_rules=[r.text for r in stored.normal] if stored else [],
            rule_floor=floor, llm_calls=state.get("llm_calls", 0), profile=str(path))
        return {"result": result.model_dump()}

    graph = StateGraph(CalibrateState, context_schema=CalibrateConfig, input_schema=CalibrateInput,
                       output_schema=CalibrateOutput)
    for name, node in (("check", check), ("train_proposer", train_proposer), ("caption", caption),
                       ("induce", induce), ("store", store)):
        graph.add_node(name, node)
    graph.add_edge(START, "check")
    graph.add_edge("check", "train_proposer")
    graph.add_edge("train_proposer", "caption")
    graph.add_edge("caption", "induce")
    graph.add_edge("induce", "store")
    graph.add_edge("store", END)
    return graph.compile(checkpointer=checkpointer)


def _thread_id(scene: str, sources: Sequence[str], rules: RuleSet | None, config: CalibrateConfig) -> str:
    digest = hashlib.sha1(f"v{GRAPH_VERSION}".encode())
    for source in sources:
        path = Path(source)
        stat = path.stat() if path.exists() else None
        digest.update(f"{path.resolve()}:{stat.st_mtime_ns if stat else 0}:{stat.st_size if stat else 0}".encode())
    digest.update(config.model_dump_json().encode())
    digest.update((rules.model_dump_json() if rules else "").encode())
    return f"calibrate:{scene}:{digest.hexdigest()[:12]}"


def calibrate(sources: Sequence[str | Path], *, scene: str, rules: RuleSet | None = None,
              config: CalibrateConfig | None = None, runtime: Runtime | None = None,
              progress: Progress | None = None, thread_id: str | None = None) -> CalibrateResult:
    """Calibrate ``scene`` on normal footage (video files, frame folders, folders of clips).

    ``rules`` skips induction and stores those rules instead. A run interrupted part-way resumes
    under the same ``thread_id`` (by default derived from the inputs); a finished one reruns.
    """
    sources = [str(source) for source in sources]
    check_input(scene, sources)  # before the runtime opens anything
    config = config or CalibrateConfig()
    runtime = runtime or Runtime.from_settings()
    thread_id = thread_id or _thread_id(scene, sources, rules, config)
    graph = build_graph(runtime, config, progress=progress, checkpointer=runtime.checkpointer)
    run_config = {"configurable": {"thread_id": thread_id}}
    started = time.perf_counter()
    with telemetry.agent_span("calibrate") as span:
        span.set_attribute("sleuth.scene", scene)
        snapshot = graph.get_state(run_config) if runtime.checkpointer is not None else None
        if snapshot is not None and snapshot.next:
            state = graph.invoke(None, run_config, context=config)
        else:
            state = graph.invoke({"scene": scene, "sources": sources,
                                  "rules": rules.model_dump() if rules else None}, run_config, context=config)
    result = CalibrateResult.model_validate(state["result"])
    return result.model_copy(update={"seconds": round(time.perf_counter() - started, 1)})
