"""The ``detect_captions`` graph: captions in, per-frame scores, decisions, reasons and events out.

    prepare -> load_rules -> gate -> deduce (loops in batches) -> score -> explain

- **prepare**: HyCoVAD caption refinement in a temporal window, then evidence pieces per frame.
- **load_rules**: the given rules, else the scene's latest rules in the rule memory, else rules
  induced from a sample of the captions (and stored).
- **gate**: every distinct piece gets a cheap score (embedding margin between the nearest anomaly
  and normal rule); a piece already judged (here or in an earlier video of the same rules) is
  reused; a near-identical piece reuses its neighbour's judgment; the rest that lean towards
  an anomaly rule go to the LLM, most frequent first, within the call budget (only when
  ``llm_weight`` > 0: by default the packaged LLMs judge no pieces, see DetectConfig).
- **deduce**: the LLM judges the gated pieces (multiple choice among the nearest rules, score
  from log-probabilities), one checkpointed batch per step, so an interrupted run resumes.
- **score**: a frame's rule score is the weighted mean of two signals: whether its caption names
  a keyword of an anomaly rule (AnomalyRuler-base) and its strongest piece's embedding margin or
  LLM judgment; the proposer score, if given, is fused in; temporal smoothing gives scores and
  decisions, and a span becomes an event only where a frame's rule score reaches
  ``min_rule_score``.
- **explain**: contiguous anomalous frames become events; the frame of each event with the
  strongest rule evidence gets one full deduction (verdict, broken rules, a one-sentence reason)
  from its caption and the proposer's stated reason. With ``validate_events`` the verdict counts
  (HyCoVAD's validation): an event the LLM judges normal is dismissed, kept with its reason, and
  its frames drop under the threshold.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from sleuth import telemetry
from sleuth.agents.deduction import EvidenceJudge, cheap_score, deduce_frame, options_for
from sleuth.agents.faithfulness import Evidence, clean, sentences
from sleuth.agents.keywords import KeywordMatcher
from sleuth.agents.rule_atoms import filter_contradictions, rule_atoms
from sleuth.agents.rules import induce_rules
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.errors import SleuthError
from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.graphs.detect_captions.state import DetectResult, Event, FrameResult
from sleuth.graphs.reducers import add_counts, merge_dicts
from sleuth.graphs.runtime import Runtime
from sleuth.tools.captions import evidence_pieces, refine_captions
from sleuth.tools.smoothing import anomalous_spans, smooth

Progress = Callable[[str, int, int], None]




class DetectState(TypedDict, total=False):
    # input
    video: str
    scene: str
    captions: list[str]
    proposer_scores: list[float] | None
    notes: list[str | None] | None  # the proposer's stated reason per frame (evidence for the deduction)
    rules: dict[str, Any] | None
    # internal
    pieces: list[list[str]]
    cheap: dict[str, dict[str, Any]]
    pending: list[dict[str, Any]]
    cursor: int
    judgments: Annotated[dict[str, dict[str, Any]], merge_dicts]
    usage: Annotated[dict[str, int], add_counts]
    # output
    frames: list[dict[str, Any]]
    events: list[dict[str, Any]]
    dismissed: list[dict[str, Any]]


def rules_fingerprint(rules: RuleSet) -> str:
    return hashlib.sha1("|".join(sorted(rule.id for rule in rules.rules)).encode()).hexdigest()[:12]


def build_graph(runtime: Runtime, config: DetectConfig | None = None, *, progress: Progress | None = None,
                checkpointer: Any = None) -> Any:
    """Compile the graph for ``runtime``; pass a checkpointer to make runs resumable."""
    config = config or DetectConfig()
    judge = EvidenceJudge(runtime.gateway)

    def usage_since(start: int) -> dict[str, int]:
        records = runtime.gateway.usage.records[start:]
        return {"llm_calls": len(records), "prompt_tokens": sum(r.prompt_tokens for r in records),
                "completion_tokens": sum(r.completion_tokens for r in records)}

    @telemetry.traced_agent("prepare")
    def prepare(state: DetectState) -> dict[str, Any]:
        captions = state["captions"]
        refined = refine_captions(captions, runtime.embedder, config.refine_window) if config.refine else captions
        return {"pieces": [evidence_pieces(caption) for caption in refined]}

    @telemetry.traced_agent("load_rules")
    def load_rules(state: DetectState) -> dict[str, Any]:
        if state.get("rules"):
            rules = RuleSet.model_validate(state["rules"])
        else:
            rules = runtime.memory.latest(state["scene"])
            if rules is None:
                step = max(1, len(state["captions"]) // config.induce_sample)
                sample = sorted(set(state["captions"][::step]))[: config.induce_sample]
                start = len(runtime.gateway.usage.records)
                induced = induce_rules(sample, scene=state["scene"], gateway=runtime.gateway)
                if not induced.anomaly:
                    raise SleuthError(f"scene {state['scene']}: the induced rules have no anomaly rule",
                                      hint="import rules with `sleuth rules import` or pass --rules")
                version = runtime.memory.save(induced, source="induced", note=f"induced from {state['video']}")
                rules = induced.model_copy(update={"version": version})
                return {"rules": rules.model_dump(), "usage": usage_since(start)}
        if not rules.anomaly:
            raise SleuthError(f"scene {state['scene']}: the rules have no anomaly rule",
                              hint="add anomaly rules (`sleuth rules edit`) before detecting")
        return {"rules": rules.model_dump()}

    @telemetry.traced_agent("gate")
    def gate(state: DetectState) -> dict[str, Any]:
        rules = RuleSet.model_validate(state["rules"])
        frequency = Counter(piece for pieces in state["pieces"] for piece in pieces)
        unique = sorted(frequency)
        if not unique:
            return {"cheap": {}, "pending": [], "cursor": 0}
        vectors = runtime.embedder(unique)
        anomaly_sim, normal_sim = _rule_similarities(vectors, rules, runtime, config)
        top_a, top_n = anomaly_sim.max(axis=1), normal_sim.max(axis=1)
        cheap = {}
        for i, piece in enumerate(unique):
            best = rules.anomaly[int(anomaly_sim[i].argmax())]
            cheap[piece] = {"score": cheap_score(float(top_a[i]), float(top_n[i])), "rule": best.label(),
                            "margin": float(top_a[i] - top_n[i])}
        cache = runtime.judgment_cache.setdefault(rules_fingerprint(rules), {})
        known = {**cache, **(state.get("judgments") or {})}
        budget = _budget(state, config) - (state.get("usage") or {}).get("llm_calls", 0)
        if config.llm_weight == 0:
            budget = 0  # judgments would not count: keep the calls for the event explanations
        candidates = [i for i in range(len(unique))
                      if unique[i] not in known and cheap[unique[i]]["margin"] >= config.gate_margin]
        candidates.sort(key=lambda i: (-frequency[unique[i]], -cheap[unique[i]]["margin"]))
        pending: list[dict[str, Any]] = []
        reused: dict[str, dict[str, Any]] = {}
        chosen: list[int] = []
        for i in candidates:
            twin = next((j for j in chosen if float(vectors[i] @ vectors[j]) >= config.reuse_cosine), None)
            if twin is not None:
                reused[unique[i]] = {"twin": unique[twin]}
                continue
            if len(pending) >= budget:
                break
            options = options_for(anomaly_sim[i], normal_sim[i], rules, config.options_per_kind)
            pending.append({"piece": unique[i], "options": [rule.model_dump() for rule in options]})
            chosen.append(i)
        # Pieces judged in earlier videos with the same rules count as reused judgments.
        from_cache = {piece: {**cache[piece], "source": "reused"} for piece in unique if piece in cache}
        return {"cheap": cheap, "pending": pending, "cursor": 0,
                "judgments": {**from_cache, **{p: {"twin": v["twin"], "source": "reused"} for p, v in reused.items()}}}

    def deduce(state: DetectState) -> dict[str, Any]:
        pending, cursor = state["pending"], state["cursor"]
        batch = pending[cursor: cursor + config.batch_size]
        if progress:  # before the work, so a failing callback loses no finished judgment
            progress("deduce", cursor, len(pending))
        start = len(runtime.gateway.usage.records)
        judged = {}
        for item in batch:
            options = [Rule.model_validate(option) for option in item["options"]]
            fallback = state["cheap"][item["piece"]]["score"]
            judgment = judge.judge(item["piece"], options, fallback)
            judged[item["piece"]] = judgment.model_dump()
        return {"judgments": judged, "cursor": cursor + len(batch), "usage": usage_since(start)}

    def more_to_deduce(state: DetectState) -> str:
        return "deduce" if state["cursor"] < len(state["pending"]) else "score"

    @telemetry.traced_agent("score")
    def score(state: DetectState) -> dict[str, Any]:
        if progress:
            progress("deduce", len(state["pending"]), len(state["pending"]))
        rules = RuleSet.model_validate(state["rules"])
        judgments = state.get("judgments") or {}
        cache = runtime.judgment_cache.setdefault(rules_fingerprint(rules), {})
        cache.update({piece: {k: v for k, v in j.items() if k != "source"} for piece, j in judgments.items()
                      if "score" in j and j.get("source") == "llm"})

        def piece_score(piece: str) -> tuple[float, str, str | None]:
            judgment = judgments.get(piece)
            if judgment and "twin" in judgment:
                twin = judgments.get(judgment["twin"], {})
                if "score" in twin:
                    judgment = {**twin, "source": "reused"}
            cheap = state["cheap"][piece]
            if judgment and "score" in judgment:
                blended = config.llm_weight * judgment["score"] + (1 - config.llm_weight) * cheap["score"]
                return blended, judgment.get("source", "llm"), judgment.get("rule") or cheap["rule"]
            return cheap["score"], "cheap", cheap["rule"]

        keywords = KeywordMatcher(rules) if config.keyword_weight > 0 else None
        weights = config.keyword_weight + config.embedding_weight
        raw, rule_values, sources, evidence, broken = [], [], [], [], []
        proposer = state.get("proposer_scores")
        for index, pieces in enumerate(state["pieces"]):
            scored = [(piece, *piece_score(piece)) for piece in pieces]
            if scored:
                piece, value, source, rule = max(scored, key=lambda item: item[1])
            else:
                piece, value, source, rule = None, config.no_evidence_score, "cheap", None
            found = keywords.match(state["captions"][index]) if keywords is not None else []
            if weights > 0:
                value = (config.keyword_weight * bool(found) + config.embedding_weight * value) / weights
            if found:  # the caption names the rule: that is the evidence, not the nearest embedding
                piece, source = ", ".join(found), "keyword"
                named = keywords.rules_of(found)
                rule = f"anomaly: {named[0]}" if named else rule
            rule_values.append(value)
            raw.append(config.fuse(value, proposer[index] if proposer is not None else None))
            sources.append(source)
            evidence.append(piece)
            broken.append(rule)
        smoothed, decisions = smooth(raw, method=config.smoothing, alpha=config.ema_alpha,
                                     window=config.vote_window, threshold=config.threshold)
        if config.min_rule_score is not None:  # spans the rules do not support are no events
            decisions = np.asarray(decisions, dtype=bool).copy()
            for first, last in anomalous_spans(decisions):
                if max(rule_values[first: last + 1]) < config.min_rule_score:
                    decisions[first: last + 1] = False
        # A frame breaks a rule only where its own evidence supports it, not because smoothing
        # carried a neighbour's score over it.
        support = config.min_rule_score if config.min_rule_score is not None else config.threshold
        frames = [FrameResult(index=i, score=float(smoothed[i]), raw_score=float(raw[i]),
                              rule_score=float(rule_values[i]), anomalous=bool(decisions[i]),
                              source=sources[i], evidence=evidence[i],
                              broken_rules=[broken[i].split(": ", 1)[1]] if decisions[i] and broken[i]
                              and broken[i].startswith("anomaly") and rule_values[i] >= support else []).model_dump()
                  for i in range(len(raw))]
        return {"frames": frames}

    @telemetry.traced_agent("explain")
    def explain(state: DetectState) -> dict[str, Any]:
        rules = RuleSet.model_validate(state["rules"])
        frames = [FrameResult.model_validate(frame) for frame in state["frames"]]
        notes = state.get("notes") or [None] * len(frames)
        proposer = state.get("proposer_scores") or [0.0] * len(frames)
        events: list[Event] = []
        start_usage = len(runtime.gateway.usage.records)
        # A full deduction costs one call, two when its answer needs the retry.
        explainable = min(config.explain_events,
                          (_budget(state, config) - (state.get("usage") or {}).get("llm_calls", 0)) // 2)
        for span in anomalous_spans([frame.anomalous for frame in frames]):
            span_frames = range(span[0], span[1] + 1)
            peak = max(span_frames, key=lambda i: frames[i].score)
            # Smoothing moves the score's peak away from the evidence: the event is explained from
            # the frame whose own rule score is highest, not from the peak of the plot.
            support = max(span_frames, key=lambda i: (frames[i].rule_score or 0.0, frames[i].score))
            rule_counts = Counter(rule for frame in frames[span[0]: span[1] + 1] for rule in frame.broken_rules)
            event = Event(start=span[0], end=span[1], peak_frame=peak, peak_score=frames[peak].score,
                          evidence_frame=support, broken_rules=[rule for rule, _ in rule_counts.most_common(3)])
            caption = state["captions"][support]
            overruled = False
            if len(events) < explainable:
                try:
                    deduction = deduce_frame(caption, event_evidence(frames[support], notes, proposer, span),
                                             _relevant_rules(rules, caption, runtime, config.max_rules),
                                             runtime.gateway)
                    event.anomaly_probability = round(deduction.probability, 4)
                    if config.validate_events:
                        event.verdict = "confirmed" if deduction.probability >= config.dismiss_below else "dismissed"
                    kept = event.verdict != "dismissed"
                    # a kept event is never explained by the model's case for "normal": the evidence speaks
                    if kept == deduction.answer.anomaly:
                        event.reason = grounded_reason(deduction.answer.reason, caption, frames[support],
                                                       anomalous=kept)
                    else:
                        overruled = True
                    # the model may name a rule; the frames' own matches stay when it names none of them
                    agreed = [rule for rule in deduction.named if rule in event.broken_rules]
                    event.broken_rules = (agreed + [r for r in event.broken_rules if r not in agreed]
                                          if event.broken_rules else deduction.named)
                except SleuthError:
                    pass  # the event keeps the rules its frames matched, unjudged
            if event.verdict == "dismissed":
                event.reason = dismissal_reason(event, caption, frames[support])
            elif event.reason is None and event.broken_rules:
                # the rule the evidence frame itself matched, not the span's most frequent one
                own = frames[support].broken_rules
                event.reason = template_reason(caption, frames[support], own[0] if own else event.broken_rules[0])
            if overruled and event.reason:
                why = ("validation is off" if not config.validate_events
                       else f"its probability is above the dismissal level {config.dismiss_below:g}")
                event.reason += (f" The LLM leaned to normal (probability of an anomaly "
                                 f"{event.anomaly_probability or 0.0:.2f}); the event stands because {why}.")
            events.append(event)
        for event in events:  # a new list: node inputs are not mutated
            for index in range(event.start, event.end + 1):
                frames[index].reason = event.reason
                if event.verdict == "dismissed":
                    dismiss(frames[index], event.anomaly_probability or 0.0, config.threshold, config.dismiss_below)
        return {"events": [event.model_dump() for event in events if event.verdict != "dismissed"],
                "dismissed": [event.model_dump() for event in events if event.verdict == "dismissed"],
                "frames": [f.model_dump() for f in frames], "usage": usage_since(start_usage)}

    graph = StateGraph(DetectState)
    graph.add_node("prepare", prepare)
    graph.add_node("load_rules", load_rules)
    graph.add_node("gate", gate)
    graph.add_node("deduce", deduce)
    graph.add_node("score", score)
    graph.add_node("explain", explain)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "load_rules")
    graph.add_edge("load_rules", "gate")
    graph.add_conditional_edges("gate", more_to_deduce, ["deduce", "score"])
    graph.add_conditional_edges("deduce", more_to_deduce, ["deduce", "score"])
    graph.add_edge("score", "explain")
    graph.add_edge("explain", END)
    return graph.compile(checkpointer=checkpointer)


def strongest_note(notes: Sequence[str | None], proposer: Sequence[float], first: int, last: int) -> int | None:
    """The position in ``first..last`` (inclusive) whose proposer score is highest among those with a
    stated reason (a note); None when no frame of the span has one."""
    said = [i for i in range(first, last + 1) if notes[i]]
    return max(said, key=lambda i: proposer[i]) if said else None


def event_evidence(frame: FrameResult, notes: Sequence[str | None], proposer: Sequence[float],
                   span: tuple[int, int]) -> str:
    """What looked unusual in an event, for its deduction: the caption piece that drove the rule
    score and the proposer's stated reason at the span's frame with the highest proposer score."""
    parts = [frame.evidence or "(no caption piece stood out)"]
    noted = strongest_note(notes, proposer, *span)
    if noted is not None:
        parts.append(f"the motion and object model says: {notes[noted]}")
    return "; ".join(parts)


def dismiss(frame: FrameResult, probability: float, threshold: float, dismiss_below: float) -> None:
    """A frame of a dismissed event: no longer anomalous, its score kept as ``prior_score`` and
    lowered under the threshold in proportion to the LLM's probability of an anomaly (relative to
    the dismissal level), so the plot and the verdict agree and a surer dismissal ranks it lower."""
    frame.prior_score = frame.score
    frame.score = round(min(frame.score, threshold - 1e-3) * min(1.0, probability / dismiss_below), 6)
    frame.anomalous = False
    frame.broken_rules = []


def dismissal_reason(event: Event, caption: str, frame: FrameResult) -> str:
    """Why an event was dismissed, from the LLM's own reason where it is true to the caption."""
    said = f" It said: {event.reason}" if event.reason else ""
    clause = frame.evidence or caption
    return (f"Dismissed: the LLM judged the span's strongest evidence ('{clause}') normal against the scene's "
            f"rules (probability of an anomaly {event.anomaly_probability or 0.0:.2f}).{said}")


def template_reason(caption: str, frame: FrameResult, rule: str) -> str:
    """A reason built from the evidence alone: what the caption says and the rule it breaks."""
    clause = frame.evidence or caption
    if frame.source == "keyword":  # the evidence is the keywords: quote the clause that names them
        words = [word.strip() for word in clause.split(",")]
        clause = next((piece for piece in evidence_pieces(caption) if any(w in piece.lower() for w in words)), clause)
    # No frame number: these positions are the caption list's, not the video's (--start, --fps).
    return f"The caption says '{clause}', which the anomaly rule '{rule}' covers."


def grounded_reason(reason: str | None, caption: str, frame: FrameResult, *, anomalous: bool = True) -> str | None:
    """The model's reason for an event when it is true to the caption (and, for an event kept as
    anomalous, names what the frame's evidence names); None otherwise (the caller then states the
    evidence itself). ``anomalous``: the verdict the reason must agree with."""
    if not reason:
        return None
    evidence = Evidence(frames=[frame.index], times=[], captions=[caption], anomalous=anomalous)
    kept, _ = clean([reason], evidence)
    said = sentences(kept[0]) if kept else []
    text = said[0].strip() if said else ""  # the prompt asks for one sentence: what follows rambles
    if not text:
        return None
    if anomalous and frame.source == "keyword" and frame.evidence:
        named = KeywordMatcher.from_keywords([word.strip() for word in frame.evidence.split(",")]).match(text)
        if not named:  # a reason that does not mention what was seen explains nothing
            return None
    return text


def _relevant_rules(rules: RuleSet, caption: str, runtime: Runtime, limit: int) -> RuleSet:
    """The rules nearest to ``caption`` (at most ``limit``, half anomaly and half normal) when the
    rule set is longer than that; the whole set otherwise."""
    if len(rules.rules) <= limit:
        return rules
    vectors = runtime.embedder([caption] + [rule.text for rule in rules.rules])
    similarity = vectors[1:] @ vectors[0]
    ranked = [rules.rules[i] for i in np.argsort(-similarity)]
    anomaly = [rule for rule in ranked if rule.kind == "anomaly"][: max(1, limit // 2)]
    normal = [rule for rule in ranked if rule.kind == "normal"][: limit - len(anomaly)]
    keep = {rule.id for rule in anomaly + normal}
    return rules.model_copy(update={"rules": [rule for rule in rules.rules if rule.id in keep]})


def _budget(state: DetectState, config: DetectConfig) -> int:
    """LLM calls this video may use in all (rules induction, deduction and explanations)."""
    return int(config.max_llm_calls_per_frame * len(state["captions"]))


def _rule_similarities(vectors: np.ndarray, rules: RuleSet, runtime: Runtime,
                       config: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each piece to each anomaly rule (best of the rule's atoms) and each normal rule."""
    atoms = [(atom, index) for index, rule in enumerate(rules.anomaly) for atom in rule_atoms(rule.text)]
    atom_vectors = runtime.embedder([atom for atom, _ in atoms])
    normal_vectors = (runtime.embedder([rule.text for rule in rules.normal]) if rules.normal
                      else np.zeros((0, vectors.shape[1]), dtype=np.float32))
    keep = filter_contradictions([atom for atom, _ in atoms], atom_vectors, normal_vectors,
                                 {rule.text for rule in rules.anomaly}, config.atom_max_normal_cosine)
    anomaly_sim = np.full((len(vectors), len(rules.anomaly)), -1.0, dtype=np.float32)
    similarity = vectors @ atom_vectors.T
    for k in keep:
        rule_index = atoms[k][1]
        anomaly_sim[:, rule_index] = np.maximum(anomaly_sim[:, rule_index], similarity[:, k])
    normal_sim = vectors @ normal_vectors.T if len(normal_vectors) else np.full((len(vectors), 1), -1.0)
    return anomaly_sim, normal_sim


def default_thread_id(video: str, scene: str, captions: Sequence[str], rules: RuleSet | None,
                      config: DetectConfig) -> str:
    digest = hashlib.sha1()
    for part in (video, scene, config.model_dump_json(), rules_fingerprint(rules) if rules else "memory", *captions):
        digest.update(part.encode())
        digest.update(b"\0")
    return f"detect_captions:{scene}:{video}:{digest.hexdigest()[:12]}"


def detect_captions(captions: Sequence[str], *, video: str = "video", scene: str = "default",
                    rules: RuleSet | None = None, proposer_scores: Sequence[float] | None = None,
                    notes: Sequence[str | None] | None = None, config: DetectConfig | None = None,
                    runtime: Runtime | None = None,
                    thread_id: str | None = None, progress: Progress | None = None) -> DetectResult:
    """Score every caption of one video. ``progress(stage, done, total)`` reports progress.

    ``rules=None`` takes the scene's latest rules from the rule memory (inducing and storing them
    from a sample of the captions when the scene has none). Runs are checkpointed under
    ``thread_id`` (by default derived from the inputs), so an interrupted run resumes where it
    stopped and a finished one returns its stored result.
    """
    captions = list(captions)
    if not captions:
        raise SleuthError(f"video {video}: no captions", hint="pass one caption per frame")
    empty = sum(1 for caption in captions if not caption.strip())
    if empty == len(captions):
        raise SleuthError(f"video {video}: all {len(captions)} captions are empty", hint="check the caption file")
    if notes is not None and len(notes) != len(captions):
        raise SleuthError(f"video {video}: {len(notes)} proposer notes for {len(captions)} captions",
                          hint="pass one note (or None) per frame")
    if proposer_scores is not None and len(proposer_scores) != len(captions):
        raise SleuthError(f"video {video}: {len(proposer_scores)} proposer scores for {len(captions)} captions",
                          hint="pass one proposer score per frame")
    config = config or DetectConfig()
    runtime = runtime or Runtime.from_settings()
    thread_id = thread_id or default_thread_id(video, scene, captions, rules, config)
    graph = build_graph(runtime, config, progress=progress, checkpointer=runtime.checkpointer)
    run_config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 100_000}
    with telemetry.agent_span("detect_captions") as span:
        span.set_attribute("sleuth.video", video)
        span.set_attribute("sleuth.frames", len(captions))
        snapshot = graph.get_state(run_config) if runtime.checkpointer is not None else None
        if snapshot is not None and snapshot.next:
            state = graph.invoke(None, run_config)  # resume an interrupted run
        elif snapshot is not None and snapshot.values.get("events") is not None:
            state = snapshot.values  # finished before: same inputs, same result
        else:
            state = graph.invoke({"video": video, "scene": scene, "captions": captions,
                                  "proposer_scores": list(proposer_scores) if proposer_scores is not None else None,
                                  "notes": list(notes) if notes is not None else None,
                                  "rules": rules.model_dump() if rules else None, "judgments": {}, "usage": {}},
                                 run_config)
    usage = state.get("usage") or {}
    frames = [FrameResult.model_validate(frame) for frame in state["frames"]]
    return DetectResult(video=video, scene=scene, rules_version=int((state.get("rules") or {}).get("version", 0)),
                        frames=frames, events=[Event.model_validate(event) for event in state["events"]],
                        dismissed=[Event.model_validate(event) for event in state.get("dismissed") or []],
                        llm_calls=usage.get("llm_calls", 0), prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0),
                        fallback_frames=sum(frame.source == "fallback" for frame in frames))
