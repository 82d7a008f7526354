"""`sleuth eval captioners`: throughput and memory of each captioner, random VLMs of a chosen shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sleuth.cli.main import app
from sleuth.config import load_settings
from sleuth.evals.captioner_bench import RANDOM_NOTE, CaptionerBenchConfig, CaptionerBenchError, run_benchmarks
from sleuth.evals.random_vlm import SHAPES, UnknownShapeError, build_random_llava, parameter_counts
from typer.testing import CliRunner

from tests.conftest import ScriptedOpenAI
from tests.synthetic_video import FPS, frames, two_movers, write_video

N_FRAMES = 12


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return two_movers(N_FRAMES)


def by_kind(report: dict, kind: str) -> dict:
    (row,) = [row for row in report["results"] if row["captioner"] == kind]
    return row


def test_structured_and_a_random_tiny_vlm_report_throughput_and_memory(clip: list[np.ndarray]) -> None:
    config = CaptionerBenchConfig(random_vlm="tiny", batch_size=4, max_new_tokens=4, devices=("cpu",))

    report = json.loads(json.dumps(run_benchmarks(frames(clip), load_settings(), config, source="synthetic")))

    assert report["frames"] == N_FRAMES and report["frame_size"] == [160, 120]
    structured, vlm = by_kind(report, "structured"), by_kind(report, "transformers")
    for row in (structured, vlm):
        assert row["fps"] > 0 and row["s_per_frame"] == pytest.approx(1 / row["fps"], rel=0.01)
        assert row["frames"] == N_FRAMES and row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    assert vlm["model"] == "random:tiny" and vlm["device"] == "cpu" and vlm["batch"] == 4
    assert vlm["random_weights"] is True and vlm["new_tokens_per_frame"] == 4
    assert RANDOM_NOTE in vlm["note"] and report["notes"] == [RANDOM_NOTE]
    assert vlm["parameters"] == parameter_counts(SHAPES["tiny"])
    assert RANDOM_NOTE not in structured["note"]
    # The packaged LLM sees no images: the LiteLLM captioner is skipped, and says why.
    litellm = by_kind(report, "litellm")
    assert "fps" not in litellm and "vlm.model" in litellm["skipped"] and "text-only" in litellm["skipped"]


def test_random_model_always_generates_the_fixed_length(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = build_random_llava(tmp_path / "vlm", "tiny", min_new_tokens=7)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    # Make the end token the model's favourite: without min_new_tokens greedy decoding would stop at once.
    favour_eos = torch.zeros(model.config.text_config.vocab_size)
    favour_eos[model.generation_config.eos_token_id] = 100.0
    model.lm_head.register_forward_hook(lambda _module, _inputs, logits: logits + favour_eos)
    conversation = [{"role": "user", "content": [{"type": "image", "image": np.zeros((20, 20, 3), np.uint8)},
                                                 {"type": "text", "text": "describe this frame"}]}]
    inputs = processor.apply_chat_template([conversation], add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")

    output = model.generate(**inputs, max_new_tokens=7, do_sample=False)

    assert output.shape[1] - inputs["input_ids"].shape[1] == 7


def test_small_shape_has_the_size_of_smolvlm_256m() -> None:
    counts = parameter_counts(SHAPES["small"])  # on the meta device: no memory
    assert 80e6 < counts["vision"] < 95e6 and 130e6 < counts["text"] < 140e6
    assert 200e6 < counts["total"] < 260e6


def test_transformers_without_a_model_is_skipped_and_bad_names_fail_early(clip: list[np.ndarray]) -> None:
    settings = load_settings()
    report = run_benchmarks(frames(clip[:4]), settings, CaptionerBenchConfig(captioners=("transformers",)))
    (row,) = report["results"]
    assert "--vlm-model" in row["skipped"] and "--random-vlm" in row["skipped"]

    with pytest.raises(UnknownShapeError, match="tiny, small"):
        run_benchmarks(frames(clip[:4]), settings, CaptionerBenchConfig(random_vlm="huge"))
    with pytest.raises(CaptionerBenchError, match="unknown captioner 'blip'"):
        run_benchmarks(frames(clip[:4]), settings, CaptionerBenchConfig(captioners=("blip",)))


def test_a_missing_model_folder_is_an_error_row(clip: list[np.ndarray], tmp_path: Path) -> None:
    config = CaptionerBenchConfig(captioners=("transformers",), vlm_model=str(tmp_path / "nothing"), devices=("cpu",))
    (row,) = run_benchmarks(frames(clip[:4]), load_settings(), config)["results"]
    assert "fps" not in row and "nothing" in row["error"] and row["device"] == "cpu"


def test_litellm_is_measured_when_a_vision_model_is_configured(
        clip: list[np.ndarray], scripted_openai: ScriptedOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/scripted-vlm")
    monkeypatch.setenv("SLEUTH_VLM__API_BASE", scripted_openai.url)
    scripted_openai.replies = ["a person walks"]

    report = run_benchmarks(frames(clip[:5]), load_settings(), CaptionerBenchConfig(captioners=("litellm",)))

    (row,) = report["results"]
    assert row["fps"] > 0 and row["model"] == "openai/scripted-vlm" and row["sample_caption"] == "a person walks"
    assert len(scripted_openai.requests) == 1 + 5  # the warm-up frame, then every frame


def test_cli_writes_the_json_and_prints_the_table(clip: list[np.ndarray], tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", clip, FPS)
    output = tmp_path / "out" / "captioners.json"

    result = CliRunner().invoke(app, ["eval", "captioners", "--video", str(video), "--frames", "6",
                                      "--random-vlm", "tiny", "--max-new-tokens", "3", "--device", "cpu",
                                      "--output", str(output)])

    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    assert report["source"] == str(video) and report["frames"] == 6
    assert [row["captioner"] for row in report["results"]] == ["structured", "transformers", "litellm"]
    assert "captions meaningless" in result.output  # under the table as well as in the JSON

    missing = CliRunner().invoke(app, ["eval", "captioners", "--video", str(tmp_path / "none.mp4")])
    assert missing.exit_code == 2 and "video not found" in missing.output
