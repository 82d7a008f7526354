"""The long-footage benchmark's parts: the looped video holds the clip's own frames again and again
(numbers and times running on), the stage of a sample is the graph node that was running, and the
memory summary says whether the score stage grew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sleuth import telemetry
from sleuth.evals.long_bench import StageTracker, loop_video, memory_summary, plot_memory
from sleuth.tools.frames import FrameReader

from tests.synthetic_video import Mover, render, write_video


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_looped_clip_repeats_its_own_frames_with_times_running_on(tmp_path: Path, suffix: str) -> None:
    clip = write_video(tmp_path / f"clip{suffix}", render([Mover(10, 40, 12, 20, vx=30)], n_frames=30))
    looped, frames = loop_video(clip, 0.1, tmp_path / f"looped{suffix}")  # 6 s of a 3 s clip: 2 loops
    assert frames == 60
    read = FrameReader(looped).read()
    assert [f.index for f in read] == list(range(60))
    assert read[45].time_s == pytest.approx(4.5)
    original = FrameReader(clip).read()
    for k in (0, 7, 29):
        assert np.array_equal(read[30 + k].image, original[k].image)  # copied packets: the same pixels
    assert loop_video(clip, 0.1, tmp_path / f"looped{suffix}") == (looped, 60)  # reused, not rewritten


def test_each_sample_is_labelled_with_the_graph_node_running() -> None:
    stages = StageTracker()
    telemetry.add_span_processor(stages)
    assert stages.current() == "outside the graph"
    with telemetry.agent_span("detect"), telemetry.agent_span("reason"):
        with telemetry.agent_span("gate"):
            assert stages.current() == "reason/gate"  # detect's reason node, inside it the rules' gate
        assert stages.current() == "reason"
    assert stages.current() == "outside the graph"


def test_the_summary_tells_flat_memory_from_growing(tmp_path: Path) -> None:
    def run(growth_mb_per_frame: float) -> list[dict[str, object]]:
        samples: list[dict[str, object]] = [{"t": 0.0, "stage": "check", "frames": 0, "rss": 500, "anon": 300,
                                             "file": 200}]
        for k in range(1, 101):
            anon = 800 + growth_mb_per_frame * 36 * k + (k % 3)
            samples.append({"t": float(k), "stage": "score", "frames": 36 * k, "rss": int(anon) + 200,
                            "anon": int(anon), "file": 200})
        samples.append({"t": 101.0, "stage": "reason/gate", "frames": 3600, "rss": 1500, "anon": 1300, "file": 200})
        return samples

    flat = memory_summary(run(0.0), frames=3600, fps=10.0)
    assert abs(flat["score_stage_anon_growth_mb_per_hour"]) < 20
    assert flat["by_stage"]["reason/gate"]["rss"] == 1500 and flat["peak_rss_mb"] == 1500
    assert [t["frames"] for t in flat["score_stage_tenths"]] == [360 * k for k in range(1, 11)]
    growing = memory_summary(run(0.01), frames=3600, fps=10.0)  # 10 KB a frame: 360 MB an hour at 10 frames/s
    assert growing["score_stage_anon_growth_mb_per_hour"] == pytest.approx(360, abs=20)
    assert plot_memory(tmp_path / "memory.png", run(0.01), "test").read_bytes()[:4] == b"\x89PNG"
