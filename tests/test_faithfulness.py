"""What a person reads in an explanation is true: sentences the evidence does not support are removed.

The cases are the failures a user saw in the main job's report on vtest.avi (an English report
ending in Chinese characters, a normal clip called "unusual", one sentence in every field) and
the claims a small model invents (a colour, a direction, an object, an action, a time or a frame
it was not shown).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sleuth.agents.explain import ExplainAnswer, Observation, clip_verdict, video_verdict
from sleuth.agents.faithfulness import Evidence, clean, sentences, unsupported
from sleuth.graphs.detect.state import VideoEvent

CAPTIONS = ["2 people and 1 other moving object. A person in the centre is walking to the left, red. "
            "A large object at the right is moving slowly away and to the left, grey.",
            "1 person. A person at the right is walking toward the camera, orange."]
NORMAL = Evidence(frames=[460, 470], times=[46.0, 47.0], captions=CAPTIONS, anomalous=False,
                  rules=["anomaly: Riding a bicycle", "normal: Walking on the pathway"])
ANOMALOUS = Evidence(frames=NORMAL.frames, times=NORMAL.times, captions=CAPTIONS, anomalous=True)


@pytest.mark.parametrize("sentence", [
    "A person in the centre walks to the left at 46.0 s (frame 460).",
    "A person in red walks to the left, which the normal rule Walking on the pathway covers.",
    "No bicycle or vehicle is seen, so no anomaly rule is broken.",
    "Nothing unusual happens.",
    "At 00:46.5 a grey object moves away.",
    "Frames 460 and 470 show people walking.",
])
def test_sentences_the_evidence_supports_are_kept(sentence: str) -> None:
    assert unsupported(sentence, NORMAL) is None


@pytest.mark.parametrize(("sentence", "reason"), [
    ("This is anomalous because the large物体 moves.", "not plain English"),
    ("The video shows a person walking on the pathway, which is unusual for the scene.", "scores call normal"),
    ("A person in a blue jacket walks past.", "colour blue"),
    ("A cyclist rides through the crowd.", "object 'cyclist'"),
    ("A person is running across the square.", "action 'running'"),
    ("A man falls at 12.0 s.", "12 s"),
    ("Frame 900 shows a person walking.", "frame 900"),
    ("The frames are consistent with the verdict that the state nothing that contradicts it.", "the task"),
    ("A person walks up the stairs and to the right.", None),  # 'right' is in the captions ('at the right')
])
def test_unsupported_or_contradicting_sentences_are_caught(sentence: str, reason: str | None) -> None:
    found = unsupported(sentence, NORMAL)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_an_anomalous_verdict_is_not_contradicted_either() -> None:
    assert "scores call anomalous" in (unsupported("Everything in the clip is normal.", ANOMALOUS) or "")
    assert unsupported("The person walking to the left is anomalous for this scene.", ANOMALOUS) is None


def test_clean_removes_repeats_across_fields_and_keeps_the_reasons() -> None:
    description = ("A person in the centre walks to the left at 46.0 s. A person in the centre walks to the left "
                   "at 46.0 s. A person walks toward the camera.")
    analysis = "A person in the centre walks to the left at 46.0 s! This is anomalous because the large物体"
    (kept_description, kept_analysis), removed = clean([description, analysis], NORMAL)
    assert kept_description == "A person in the centre walks to the left at 46.0 s. A person walks toward the camera."
    assert kept_analysis == ""
    assert len(removed) == 3 and sum("repeats an earlier sentence" in r for r in removed) == 2
    assert all("物体" not in kept for kept in (kept_description, kept_analysis))


def test_sentences_split_on_ends_not_on_decimals() -> None:
    assert sentences("At 46.5 s a person walks. Then 47.0 s later nothing.") == [
        "At 46.5 s a person walks.", "Then 47.0 s later nothing."]


def test_the_model_can_only_write_plain_english_prose() -> None:
    schema = ExplainAnswer.model_json_schema()
    assert "pattern" in schema["properties"]["description"]  # the grammar llama.cpp decodes under
    assert "anomalous" not in schema["properties"] and "judgment" not in schema["properties"]
    with pytest.raises(ValidationError):
        ExplainAnswer(description="the large物体", analysis="ok")
    with pytest.raises(ValidationError):
        ExplainAnswer(description='a "quoted" word', analysis="ok")
    assert ExplainAnswer(description="A person walks left at 46.0 s (frame 460).", analysis="Normal; rule 2.")


def _obs(*scores: float) -> list[Observation]:
    return [Observation(index=460 + k, time_s=46.0 + k / 10, score=s) for k, s in enumerate(scores)]


def test_verdicts_come_from_scores_and_events() -> None:
    # under the threshold: normal, whatever anyone writes
    below = clip_verdict(_obs(0.2, 0.31), threshold=0.5, events=[])
    assert not below.anomalous and "0.31" in below.sentence and "under the threshold 0.50" in below.sentence
    # above the threshold but detection reported no event (no rule supported it): not an event
    above = clip_verdict(_obs(0.2, 0.52), threshold=0.5, events=[])
    assert not above.anomalous and above.sentence.startswith("Not an event") and "0.52" in above.sentence
    # without a detector's events the scores decide alone
    assert clip_verdict(_obs(0.2, 0.52), threshold=0.5, events=None).anomalous
    event = VideoEvent(id=3, start_frame=461, end_frame=470, start_s=46.1, end_s=47.0, peak_frame=462, peak_s=46.2,
                       peak_score=0.8)
    inside = clip_verdict(_obs(0.2, 0.8), threshold=0.5, events=[event])
    assert inside.anomalous and "event 3" in inside.sentence
    video = video_verdict(start_s=39.7, end_s=79.4, peak_score=0.52, peak_s=52.2, threshold=0.5, events=[])
    assert not video.anomalous and video.sentence.startswith("No anomalous event in 39.7-79.4 s")


def test_a_sentence_cut_off_by_the_length_limit_is_removed() -> None:
    (kept,), removed = clean(["A person walks to the left. The frames are not a"], NORMAL)
    assert kept == "A person walks to the left." and removed == ["The frames are not a [cut off]"]


def test_the_report_audit_fails_on_a_verdict_against_the_scores_and_on_invented_text() -> None:
    from sleuth.evals.explanations import audit
    from sleuth.graphs.detect.state import DetectReport, FrameScore
    from sleuth.graphs.explain.state import Explanation, Judgment

    frames = [FrameScore(index=460 + k, time_s=46.0 + k / 10, score=0.2, proposer=0.2, gated=True, anomalous=False,
                         caption=CAPTIONS[k % 2]) for k in range(10)]
    good = Judgment(level="clip", start_s=46.0, end_s=46.3, frames=[460, 463], anomalous=False,
                    judgment="Highest score 0.20 at 46.0 s, under the threshold 0.50.",
                    description="A person walks to the left.", analysis="Walking matches a normal rule.",
                    removed=["A cyclist rides by. [names the object 'cyclist', which no caption mentions]"])
    video = good.model_copy(update={"level": "video", "start_s": 46.0, "end_s": 46.9})
    report = DetectReport(video="v.avi", scene="plaza", threshold=0.5, gate_threshold=1.0, frames=frames, events=[],
                          explanation=Explanation(video="v.avi", scene="plaza", sampled_frames=[460, 463],
                                                  source="captions", clips=[good], video_judgment=video))
    counts, problems = audit(report)
    assert problems == [] and counts["kept"] == 4 and counts["removed: names the"] == 2
    bad = good.model_copy(update={"anomalous": True,
                                  "description": "A man in blue runs away. A man in blue runs away."})
    report.explanation = report.explanation.model_copy(update={"clips": [bad]})
    _, problems = audit(report)
    assert any("overlaps no event" in p for p in problems) and any("repeated" in p for p in problems)
    assert any("colour blue" in p for p in problems)


def test_a_looping_answer_is_cut_at_the_first_repeat() -> None:
    """Issue 17: the 0.5B repeated 'The video was shot at 40 seconds...' until its token limit."""
    from sleuth.agents.faithfulness import RepeatStop

    loop = "The video shows a man in a red jacket. " + "The video was shot at 40 seconds, which is the start time. " * 6
    guard = RepeatStop()
    shown = "".join(guard.feed(loop[i:i + 7]) for i in range(0, len(loop), 7)) + guard.finish()
    assert guard.stopped
    assert shown.rstrip() == guard.text == ("The video shows a man in a red jacket. "
                                   "The video was shot at 40 seconds, which is the start time.")


def test_near_repeats_and_repeated_lines_stop_too_but_distinct_prose_passes() -> None:
    from sleuth.agents.faithfulness import RepeatStop

    def run(text: str) -> RepeatStop:
        guard = RepeatStop()
        guard.feed(text)
        guard.finish()
        return guard

    near = run("A cyclist crosses the walkway at 0:12. A cyclist crosses the walkway at 0:12 again.")
    assert near.stopped and near.text == "A cyclist crosses the walkway at 0:12."
    lines = run("- frame 10 shows a car\n- frame 10 shows a car\n- frame 10 shows a car")
    assert lines.stopped and lines.text == "- frame 10 shows a car"
    prose = "Frame 93 at 9.3 s shows a cyclist. The rule 'Riding a bicycle' covers it. No. No. See report.html."
    passed = run(prose)
    assert not passed.stopped and passed.text == prose  # decimals stay whole; one-word repeats are not loops


def test_a_place_in_the_picture_no_caption_gives_is_caught() -> None:
    """Read in the Ped2 video 06 report: the caption put the cyclist at the bottom, the model's
    sentence 'in the centre'."""
    evidence = Evidence(frames=[120], times=[6.0], anomalous=True,
                        captions=["A person riding a bicycle at the bottom left is moving fast to the right."])
    assert unsupported("A person rides a bicycle in the centre of the walkway.", evidence) == \
        "places it at the centre, which no caption says"
    assert unsupported("A person rides a bicycle at the bottom of the frame.", evidence) is None
    assert unsupported("A cyclist crosses the lower part of the picture.", evidence) is None
    assert unsupported("Nobody is in the middle.", evidence) is None  # a claim of absence stays


def test_sentences_that_only_restate_the_lead_are_left_out() -> None:
    """The 1.5B, told the analyst already sees the range's headline, still wrote it out again."""
    from sleuth.agents.faithfulness import RepeatStop

    lead = ("vtest.avi 0:10.0-0:20.0 (101 frames), scene campus: anomaly score mean 0.38, max 0.77 at 0:15.3 "
            "(frame 153); 27 frames above the alarm threshold 0.5.")
    answer = ("The scene campus has an anomaly score mean of 0.38 and a maximum of 0.77 at frame 153. "
              "There are 27 frames above the alarm threshold of 0.5. The peak is at 15.3 s. "
              "A cyclist passes at 15 s and 18.2 s.")
    guard = RepeatStop(known=lead)
    shown = guard.feed(answer) + guard.finish()
    assert shown == guard.text == "The peak is at 15.3 s. A cyclist passes at 15 s and 18.2 s."
    assert not guard.stopped
