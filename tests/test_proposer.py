"""The SSL proposer: its task building blocks, training and scoring, checkpoints, and the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sleuth.config import load_settings
from sleuth.tools.frames import Frame
from sleuth.tools.proposer import Proposer, ProposerConfig, ProposerError, ProposerStore
from sleuth.tools.proposer.model import PERMUTATIONS, GradNorm, Memory, ProposerNet, jigsaw
from sleuth.tools.proposer.proposer import ObjectScore

from tests.test_cli import assert_one_line_error, sleuth

TINY = {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16, "memory_slots": 10, "smooth_frames": 1.0}


def walking_clip(count: int = 48, *, speed: float = 2.0, size: int = 12, seed: int = 0,
                 start_index: int = 0) -> list[Frame]:
    """A textured static background with two dark squares moving right at ``speed`` px/frame."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(90, 170, (96, 128), dtype=np.uint8), (0, 0), 3)
    frames = []
    for i in range(count):
        image = background.copy()
        for lane, offset in ((25, 5), (65, 60)):
            x = int((offset + speed * i) % 110)
            image[lane:lane + size, x:x + size] = 30
        frames.append(Frame(start_index + i, (start_index + i) / 10.0, np.repeat(image[..., None], 3, axis=2)))
    return frames


def test_jigsaw_identity_keeps_the_patch_and_other_permutations_move_quadrants() -> None:
    patch = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 64, 64)
    assert torch.equal(jigsaw(patch, torch.tensor([0])), patch)
    swapped = jigsaw(patch, torch.tensor([PERMUTATIONS.index((1, 0, 2, 3))]))
    assert torch.equal(swapped[0, :32, :32], patch[0, :32, 32:])
    assert torch.equal(swapped[0, 32:, :], patch[0, 32:, :])


def test_memory_reads_are_mixtures_of_its_items() -> None:
    memory = Memory(slots=5, dim=8, shrink=0.0)
    read, entropy = memory(torch.randn(2, 8, 3, 3))
    assert read.shape == (2, 8, 3, 3)
    assert 0 <= float(entropy.detach()) <= np.log(5) + 1e-5


def test_gradnorm_raises_the_weight_of_the_task_that_trains_slowest() -> None:
    shared = torch.nn.Parameter(torch.ones(4))
    gradnorm = GradNorm(2, lr=0.1)
    for step in range(20):
        # task 0 makes no progress, task 1 halves its loss: task 0 must gain weight
        losses = torch.stack([(shared * 1.0).sum(), (shared * 0.5**step).sum()])
        gradnorm.step(losses, shared)
    weights = gradnorm.current()
    assert weights[0] > weights[1]
    assert float(weights.sum()) == pytest.approx(2.0, abs=1e-4)


def test_network_shapes() -> None:
    net = ProposerNet(width=8, memory_slots=4)
    features = net.encode(torch.rand(3, 9, 64, 64))
    assert features.shape == (3, 9 * net.encoder.channels, 8, 8)
    displacement = net.trajectory(torch.rand(2, 4, 7, 2), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool))
    assert displacement.shape == (2, 4, 2)


def test_held_out_runs_are_spread_over_the_clip_with_an_optional_guard_band() -> None:
    from sleuth.tools.proposer.proposer import held_out_split

    train, held = held_out_split(400, 0.15)
    assert len(held) == 60 and held[-1] == 399 and held[0] < 100  # not only the tail
    assert sorted(train + held) == list(range(400))
    train, held = held_out_split(400, 0.15, guard=4)
    assert min(abs(t - h) for t in train for h in held) > 4  # a crop spans t-4..t+4


def test_fit_score_save_and_load(tmp_path: Path) -> None:
    proposer = Proposer(ProposerConfig(**TINY))
    report = proposer.fit([walking_clip(48)])
    assert report.frames == 48 and report.objects > 40 and report.epochs == 1
    assert proposer.trained and proposer.threshold is not None

    test = walking_clip(30, seed=1, start_index=100)
    scores = proposer.score(test)
    assert scores.frame_indices == list(range(100, 130))
    assert scores.times_s[0] == pytest.approx(10.0)
    assert len(scores.frame_scores) == len(scores.raw_scores) == len(scores.objects) == 30
    assert np.isfinite(scores.frame_scores).all()
    tracked = [obj for frame in scores.objects[5:] for obj in frame]
    assert tracked and {"middle", "irregularity", "jigsaw"} <= set(tracked[0].tasks)
    assert set(scores.suspects(threshold=-1e9)) == set(range(100, 130))

    path = proposer.save(tmp_path / "cam.pt")
    again = Proposer.load(path)
    assert np.allclose(again.score(test).frame_scores, scores.frame_scores, atol=1e-5)


def test_untrained_or_broken_proposers_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProposerError, match="not trained"):
        Proposer(ProposerConfig(**TINY)).score(walking_clip(10))
    with pytest.raises(ProposerError, match="too little normal footage"):
        Proposer(ProposerConfig(**TINY)).fit([walking_clip(5)])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ProposerError) as caught:
        Proposer.load(broken)
    assert "\n" not in str(caught.value) and "recalibrate" in str(caught.value)


def test_store_keeps_one_checkpoint_per_scene_and_names_known_scenes() -> None:
    store = ProposerStore(load_settings())
    proposer = Proposer(ProposerConfig(**TINY))
    proposer.fit([walking_clip(40)])
    store.save("cam1", proposer)
    store.save("cam1", proposer)  # recalibrating replaces, never duplicates
    assert store.scenes() == ["cam1"]
    assert store.load("cam1").scene == "cam1"
    with pytest.raises(ProposerError, match=r"no proposer for scene 'lobby' \(calibrated scenes: cam1\)"):
        store.load("lobby")
    with pytest.raises(Exception, match="invalid scene name"):
        store.path_for("../etc")


@pytest.mark.slow
def test_a_fast_object_scores_above_the_normal_pace_it_was_trained_on() -> None:
    config = ProposerConfig(epochs=2, samples_per_epoch=1000, batch_size=32, memory_slots=20, smooth_frames=0.0)
    proposer = Proposer(config)
    proposer.fit([walking_clip(120, speed=2.0, seed=s) for s in range(3)])
    normal = proposer.score(walking_clip(40, speed=2.0, seed=7)).frame_scores[8:-8]
    fast = proposer.score(walking_clip(40, speed=8.0, seed=7)).frame_scores[8:-8]
    assert np.median(fast) > np.median(normal)


def _write_frames(folder: Path, frames: list[Frame]) -> Path:
    folder.mkdir(parents=True)
    for frame in frames:
        cv2.imwrite(str(folder / f"{frame.index:03d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.slow
def test_cli_calibrates_a_scene_then_scores_footage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    normal = _write_frames(tmp_path / "normal", walking_clip(40))
    test = _write_frames(tmp_path / "test", walking_clip(30, seed=3))
    monkeypatch.setenv("SLEUTH_TOOLS__PROPOSER_DIR", str(tmp_path / "proposers"))
    result = sleuth("calibrate", "proposer", "--video", str(normal), "--scene", "cam1", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path / "proposers" / "cam1.pt"
    assert "alarm threshold" in result.stderr

    report = tmp_path / "scores.json"
    result = sleuth("score", str(test), "--scene", "cam1", "--json", str(report), "--plot", str(tmp_path / "s.png"))
    assert result.returncode == 0, result.stderr
    assert "30 frames, threshold" in result.stdout and "top frames:" in result.stdout
    saved = __import__("json").loads(report.read_text())
    assert len(saved["frames"]) == 30 and (tmp_path / "s.png").stat().st_size > 1000

    assert_one_line_error(sleuth("score", str(test), "--scene", "lobby"), "no proposer for scene 'lobby'",
                          "sleuth calibrate proposer")
    assert_one_line_error(sleuth("calibrate", "proposer", "--video", str(tmp_path / "missing.mp4"),
                                 "--scene", "cam2"), "video not found")
    assert_one_line_error(sleuth("score", str(test), "--scene", "../cam1"), "invalid scene name")


@pytest.mark.parametrize(("share", "says"), [
    (0.0, "a kind of object the scene's normal footage does not show"),
    (0.0002, "rare in the scene's normal footage (under 0.1% of its objects)"),
    (0.004, "rare in the scene's normal footage (0.4% of its objects)"),
])
def test_an_events_reason_states_the_class_share_without_rounding_it_to_zero(share: float, says: str) -> None:
    """A bicycle seen in 0.02 % of Ped2's normal objects was reported as '0.0% of its objects'."""
    bicycle = ObjectScore(track_id=1, box=(0, 0, 10, 10), score=9.0, tasks={"class": 5.0, "speed": 3.0},
                          label="bicycle", speed_ratio=6.1, class_share=share)
    reason = bicycle.reason()
    assert reason is not None and reason.startswith("A bicycle: " + says)
    assert reason.endswith("usual speed in this scene.")
