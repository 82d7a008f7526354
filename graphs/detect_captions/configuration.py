"""Configuration of the ``detect_captions`` graph (every field documents itself)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DetectConfig(BaseModel):
    refine: bool = Field(default=False, description="HyCoVAD caption refinement before deduction.")
    refine_window: int = Field(default=10, ge=1, description="Refinement window (frames).")
    keyword_weight: float = Field(default=1.0, ge=0, description="Weight of the keyword signal in a frame's rule "
                                  "score: 1 when the caption names a keyword of an anomaly rule (a bicycle, a car, "
                                  "running; sleuth.agents.keywords), else 0. Chosen with the embedding weight and the "
                                  "smoothing by the caption validation protocol (python -m "
                                  "sleuth.evals.caption_select): picked on the odd-numbered videos of Ped2 and "
                                  "Avenue, reported on the others.")
    embedding_weight: float = Field(default=0.1, ge=0, description="Weight of the embedding margin between the "
                                    "nearest anomaly and normal rule (or the LLM's piece judgment) in a frame's "
                                    "rule score. The rule score is the weighted mean of the two signals.")
    smoothing: Literal["ema_vote", "anomalyruler", "none"] = Field(
        default="anomalyruler", description="ema_vote: EMA then windowed majority vote (absolute threshold); "
        "anomalyruler: the peer's own code (EMA alpha 0.33, decisions above the video's mean, second EMA at "
        "that mean), so scores rank frames within a whole video; events still need the rules' support "
        "(min_rule_score).")
    ema_alpha: float = Field(default=0.1, gt=0, le=1, description="EMA rate (ema_vote) or first EMA rate "
                             "(anomalyruler, whose peer default is 0.33).")
    vote_window: int = Field(default=15, ge=1, description="Moving-median and majority-vote window (frames).")
    threshold: float = Field(default=0.5, ge=0, le=1, description="Score above which a frame is anomalous.")
    max_llm_calls_per_frame: float = Field(default=0.25, ge=0, description="LLM budget of the gate, per frame.")
    gate_margin: float = Field(default=-0.05, description="Pieces whose nearest anomaly rule is at least this "
                               "close compared with the nearest normal rule (cosine difference) may go to the LLM.")
    reuse_cosine: float = Field(default=0.93, gt=0, le=1, description="A piece this similar to a judged piece "
                                "reuses its judgment.")
    options_per_kind: int = Field(default=3, ge=1, le=4, description="Nearest anomaly and normal rules offered "
                                  "to the LLM for each piece.")
    llm_weight: float = Field(default=0.0, ge=0, le=1, description="Weight of the LLM's judgment against the "
                              "cheap score for a piece the LLM judged. 0 (default) spends no call on piece "
                              "judgments: on Ped2 the packaged 0.5B and 1.5B models' judgments lowered frame AUC "
                              "(97.8 -> 96.9 and 96.4 at 0.5). Raise it with a stronger LLM.")
    atom_max_normal_cosine: float = Field(default=0.5, gt=0, le=1.01, description="A rule atom this close to a "
                                          "normal rule is ambiguous and is not matched on its own.")
    no_evidence_score: float = Field(default=0.0, ge=0, le=1, description="Rule score of a frame with no "
                                     "caption piece (not captioned, or an empty caption). The video pipeline "
                                     "sets it to the scene's typical score on normal footage.")
    min_rule_score: float | None = Field(default=0.5, ge=0, le=1, description="An event needs a frame whose own "
                                         "rule score (before fusion with the proposer) reaches this, else its frames "
                                         "are cleared (HyCoVAD: the proposer proposes, the rules validate). None: "
                                         "any span over the threshold is an event.")
    proposer_weight: float = Field(default=0.3, ge=0, le=1, description="Weight of proposer scores when given.")
    batch_size: int = Field(default=16, ge=1, description="Pieces judged per checkpointed step.")
    max_rules: int = Field(default=40, ge=2, description="Rules given to a full-caption deduction, nearest to "
                           "the caption first, when the scene has more.")
    validate_events: bool = Field(default=False, description="HyCoVAD's second stage: the full deduction of each "
                                  "explained event is a verdict that counts. An event the LLM judges normal "
                                  "(probability of 'anomaly' under dismiss_below, from its verdict token's "
                                  "log-probabilities) "
                                  "is dismissed: kept in the result with the LLM's reason, its frames no longer "
                                  "anomalous and their scores lowered below the threshold in proportion to that "
                                  "probability. Off by default: see docs/benchmarks.md (validation).")
    dismiss_below: float = Field(default=0.5, gt=0, le=1, description="With validate_events, an event whose "
                                 "probability of 'anomaly' is under this is dismissed. 0.5 is the model's own "
                                 "decision; the packaged models lean to 'normal' (docs/benchmarks.md, validation).")
    explain_events: int = Field(default=5, ge=0, description="Events per video explained by a full deduction.")
    induce_sample: int = Field(default=20, ge=1, description="Captions sampled to induce rules when a "
                               "scene has none (HyCoVAD: 20 per video).")

    def fuse(self, rule_score: float, proposer: float | None) -> float:
        """A frame's score before smoothing: its rule score, weighted with its proposer score when there is one."""
        if proposer is None:
            return float(rule_score)
        return (1 - self.proposer_weight) * float(rule_score) + self.proposer_weight * float(proposer)

    @classmethod
    def for_video(cls, **overrides: object) -> DetectConfig:
        """The reasoning settings of the video pipeline (``detect``, ``calibrate``): the embedding margin
        alone, fused with the proposer, EMA and majority vote at an absolute threshold. They were
        measured on the structured captioner's own words (docs/benchmarks.md, pipeline benchmark); the
        keyword fusion was chosen on CogVLM captions and is not measured there yet."""
        settings: dict[str, object] = {"keyword_weight": 0.0, "embedding_weight": 1.0, "smoothing": "ema_vote",
                                       "proposer_weight": 0.3, "min_rule_score": 0.5}
        return cls.model_validate({**settings, **overrides})
