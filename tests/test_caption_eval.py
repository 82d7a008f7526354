"""The caption benchmark harness: datasets, metrics, keyword reference, plots, CLI (no LLM here)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sleuth.agents.schemas import RuleSet
from sleuth.evals import caption_bench, datasets
from sleuth.evals.caption_bench import RulesFileError, read_rules, run_caption_benchmark
from sleuth.evals.datasets import DatasetError, load_captions, load_dataset, load_labels, parse_videos
from sleuth.evals.keyword_baseline import anomaly_keywords, detect_keywords, match, smooth, stem
from sleuth.evals.metrics import evaluate, frame_ap, frame_auc
from sleuth.evals.plots import plot_video
from sleuth.graphs.detect_captions import DetectConfig, DetectResult, FrameResult
from sleuth.tools.smoothing import adjusted_ema as ema
from sleuth.tools.smoothing import anomalous_spans

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomalyruler"
SLEUTH = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"

RULES = """**Anomaly Human Activities:**
1. Riding a bicycle or skateboarding on the walkway
2. Running

**Anomaly Non-Human Objects:**
1. Vehicles such as cars on the walkway

**Normal Human Activities:**
1. Walking on the walkway with a bag

**Normal Non-Human Objects:**
1. Trees and a building
"""
NORMAL = "A person is walking on the walkway with a bag. Other than people, there are trees."
ANOMALY = "A person is riding a bicycle among people walking. Other than people, there are trees."


def make_dataset(root: Path, videos: dict[str, Sequence[int]], *, rules: str | None = RULES,
                 captions: dict[str, list[str]] | None = None) -> Path:
    """A caption dataset in the real layout: caption i is ANOMALY where label i is 1."""
    (root / "test_frame").mkdir(parents=True)
    (root / "test_frame_description").mkdir()
    rows = []
    for video, labels in videos.items():
        paths = [f"{root.name}/test/{video}/{i:03d}.jpg" for i in range(len(labels))]
        with (root / "test_frame" / f"test_{video}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_path", "label"])
            writer.writerows(zip(paths, labels, strict=True))
        rows += list(zip(paths, labels, strict=True))
        lines = (captions or {}).get(video) or [ANOMALY if label else NORMAL for label in labels]
        (root / "test_frame_description" / f"test_{video}.txt").write_text("\n".join(lines) + "\n")
    with (root / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "label"])
        writer.writerows(rows)
    if rules is not None:
        (root / "rules.txt").write_text(rules)
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "tiny", {"01": [0] * 6 + [1] * 8 + [0] * 6, "02": [0] * 10, "03": [1] * 5})


def sleuth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SLEUTH, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- datasets ------------------------------------------------------------------------------------

def test_loads_captions_then_labels(tiny: Path) -> None:
    captions = load_captions(tiny)
    assert captions.name == "tiny" and [v.id for v in captions.videos] == ["01", "02", "03"]
    assert captions.frames == 35 and captions.rules_file == tiny / "rules.txt"
    assert not hasattr(captions.videos[0], "labels")  # no label in the captions-only records
    labeled = load_labels(captions)
    assert labeled.labels_by_video()["01"] == [0] * 6 + [1] * 8 + [0] * 6
    assert labeled.anomalous_frames == 13
    assert labeled.videos[0].captions[6] == ANOMALY


def test_subset_and_max_frames(tiny: Path) -> None:
    dataset = load_dataset(tiny, videos=parse_videos("3, 01"), max_frames=4)
    assert [v.id for v in dataset.videos] == ["01", "03"]
    assert [len(v.captions) for v in dataset.videos] == [4, 4] and dataset.videos[0].labels == [0] * 4
    with pytest.raises(DatasetError, match="video 07 is not in"):
        load_captions(tiny, videos=["07"])


def test_real_ped2_loads_and_matches_test_csv() -> None:
    dataset = load_dataset(REAL / "ped2")
    assert len(dataset.videos) == 12 and dataset.frames == 2010 and dataset.anomalous_frames == 1648


def test_caption_label_count_mismatch_names_the_video(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", {"01": [0, 1, 0], "03": [0, 0, 1, 1]},
                        captions={"03": [NORMAL, NORMAL, ANOMALY]})
    with pytest.raises(DatasetError) as raised:
        load_captions(root)
    message = str(raised.value)
    assert message.startswith("video 03: 3 captions but 4 labels in ") and "test_03.txt" in message
    assert "\n" not in message


def test_empty_captions_name_the_video_and_count(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", {"01": [0, 0, 0], "02": [0, 1, 1, 0]},
                        captions={"02": [NORMAL, "", "  ", NORMAL]})
    with pytest.raises(DatasetError, match=r"video 02: 2 empty caption\(s\) of 4 .*test_02.txt \(line 2, 3\)"):
        load_captions(root)
    (root / "test_frame_description" / "test_02.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"video 02: no captions in .*test_02.txt"):
        load_captions(root)


@pytest.mark.parametrize("breakage, fragment", [
    ("missing", "does not exist"),
    ("no_captions_dir", "no test_frame_description/ folder"),
    ("no_videos", "has no videos"),
    ("no_label_file", "video 02: "),
])
def test_wrong_layout_says_what_is_expected(tmp_path: Path, breakage: str, fragment: str) -> None:
    root = tmp_path / "d"
    if breakage != "missing":
        make_dataset(root, {"01": [0, 1], "02": [1, 0]})
    if breakage == "no_captions_dir":
        shutil.rmtree(root / "test_frame_description")
    elif breakage == "no_videos":
        for path in (root / "test_frame_description").iterdir():
            path.unlink()
    elif breakage == "no_label_file":
        (root / "test_frame" / "test_02.csv").unlink()
    with pytest.raises(DatasetError) as raised:
        load_captions(root)
    assert fragment in str(raised.value)
    if breakage != "no_label_file":
        assert "expected a folder with test_frame_description/test_NN.txt" in str(raised.value)


def test_labels_must_concatenate_to_test_csv_and_be_binary(tiny: Path) -> None:
    text = (tiny / "test.csv").read_text().splitlines()
    text[3] = text[3][:-1] + "1"
    (tiny / "test.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetError, match="video 01: .* disagrees with .*test.csv at data row 3"):
        load_dataset(tiny)
    (tiny / "test.csv").unlink()
    (tiny / "test_frame" / "test_02.csv").write_text("image_path,label\n" + "x.jpg,2\n" * 10)
    with pytest.raises(DatasetError, match="video 02: label '2' in data row 1 of .*test_02.csv"):
        load_dataset(tiny)


def test_rules_file_without_anomaly_rules_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("**Normal Human Activities:**\n1. Walking\n")
    with pytest.raises(RulesFileError, match=r"rules.txt has no anomaly rules \(1 normal\).*Anomaly Human"):
        read_rules(path)
    with pytest.raises(RulesFileError, match="does not exist"):
        read_rules(tmp_path / "nope.txt")


# -- metrics -------------------------------------------------------------------------------------

def test_metrics_on_known_arrays() -> None:
    assert frame_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert frame_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert frame_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert frame_ap([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert frame_auc([1, 1, 1], [0.2, 0.3, 0.4]) is None and frame_ap([0, 0], [0.1, 0.2]) is None
    metrics = evaluate({"a": [0, 0, 1, 1], "b": [1, 1], "c": [0, 1]},
                       {"a": [0.1, 0.2, 0.8, 0.9], "b": [0.7, 0.9], "c": [0.6, 0.4]},
                       {"a": [0, 0, 1, 1], "b": [1, 1], "c": [1, 0]})
    by_video = {video.video: video for video in metrics.per_video}
    assert by_video["b"].auc is None and by_video["b"].ap is None  # one class: no ROC curve
    assert by_video["a"].auc == 1.0 and by_video["c"].auc == 0.0
    assert metrics.mean_video_auc == 0.5 and metrics.videos_with_auc == 2
    assert metrics.frames == 8 and metrics.anomalous_frames == 5
    assert metrics.auc == pytest.approx(frame_auc([0, 0, 1, 1, 1, 1, 0, 1], [.1, .2, .8, .9, .7, .9, .6, .4]))
    assert metrics.precision == pytest.approx(4 / 5) and metrics.recall == pytest.approx(4 / 5)


# -- keyword reference ---------------------------------------------------------------------------

def test_stemming_and_matching_ignore_inflection() -> None:
    assert stem("bicycles") == stem("bicycle") and stem("running") == stem("runs") == stem("ran")
    assert stem("riding") == stem("rides") and stem("skateboarding") == stem("skateboard")
    assert match("Two men ride bicycles.", ["riding", "bicycle"]) == ["riding", "bicycle"]
    assert match("He is carrying a bag.", ["car"]) == []  # whole words only
    assert match("a golf cart passes", ["golf cart"]) == ["golf cart"]


def test_keywords_come_from_anomaly_rules_minus_generic_and_normal_words() -> None:
    keywords = anomaly_keywords(RuleSet.parse(RULES))
    assert {"riding", "bicycle", "skateboarding", "running", "vehicles", "car"} <= set(keywords)
    assert not {"walkway", "person", "people", "unusual", "such", "bag", "trees"} & set(keywords)


def test_ema_matches_pandas_adjusted_ewm() -> None:
    values = [0, 1, 1, 0, 1]
    expected, num, den = [], 0.0, 0.0
    for i, value in enumerate(values):
        num = num * 0.67 + value
        den = den * 0.67 + 1
        expected.append(num / den)
        assert ema(values, 0.33)[i] == pytest.approx(expected[i])
    scores, decisions = smooth([0, 0, 1, 1, 1, 0, 0], DetectConfig(smoothing="anomalyruler"))
    assert list(decisions) == [False, False, True, True, True, True, False] and scores.max() <= 1


def test_keyword_reference_scores_the_tiny_dataset(tiny: Path) -> None:
    dataset = load_dataset(tiny)
    rules = RuleSet.parse(RULES)
    labels = dataset.videos[0].labels
    raw = detect_keywords(dataset.videos[0].captions, rules, video="01", config=DetectConfig(smoothing="none"))
    assert frame_auc(labels, raw.scores) == 1.0
    result = detect_keywords(dataset.videos[0].captions, rules, video="01")  # the peer's smoothing lags
    assert result.llm_calls == 0 and all(frame.source == "cheap" for frame in result.frames)
    assert frame_auc(labels, result.scores) > 0.7
    assert result.events and result.events[0].start >= 6
    assert "Riding a bicycle or skateboarding on the walkway" in result.frames[8].broken_rules


@pytest.mark.parametrize("name, floor", [("ped2", 0.8), ("avenue", 0.6)])
def test_keyword_reference_on_real_data(name: str, floor: float) -> None:
    """ped2: 0.935 frame AUC (avenue 0.734); the authors' keyword base reports 0.965 (0.822)."""
    dataset = load_dataset(REAL / name)
    rules = read_rules(dataset.rules_file)
    keywords = anomaly_keywords(rules)
    scores = {v.id: detect_keywords(v.captions, rules, keywords=keywords).scores for v in dataset.videos}
    auc = evaluate(dataset.labels_by_video(), scores).auc
    print(f"{name} keyword AUC {auc:.4f}")
    assert auc > floor


def test_anomalyruler_smoothing_reproduces_the_authors_number_on_ped2() -> None:
    """Their keyword list, their substring match, their smoothing: 92.5 on Ped2, as the peer reports."""
    from sleuth.tools.smoothing import anomalyruler_smooth

    theirs = ["trolley", "cart", "luggage", "bicycle", "scooter", "vehicles", "vans", "accident", "running",
              "jumping", "riding", "skateboarding", "scooting", "lying", "falling", "bending", "fighting",
              "pushing", "loitering", "climbing", "tampering", "lingering"]
    dataset = load_dataset(REAL / "ped2")
    scores = {v.id: list(anomalyruler_smooth([float(any(k in c for k in theirs)) for c in v.captions])[0])
              for v in dataset.videos}
    assert evaluate(dataset.labels_by_video(), scores).auc == pytest.approx(0.9254, abs=5e-4)


# -- plots ---------------------------------------------------------------------------------------

def test_plot_is_a_png(tmp_path: Path) -> None:
    assert anomalous_spans([0, 1, 1, 0, 1]) == [(1, 2), (4, 4)]
    path = plot_video(tmp_path / "plots" / "video_01.png", video="01", scores=[0.1, 0.2, 0.9, 0.8, 0.1],
                      labels=[0, 0, 1, 1, 0], threshold=0.5, decisions=[0, 0, 1, 1, 0], auc=1.0)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# -- harness -------------------------------------------------------------------------------------

def _fake_detect(calls: list[str]) -> Any:
    def detect_captions(captions: Sequence[str], *, video: str = "video", scene: str = "default",
                        rules: RuleSet | None = None, config: DetectConfig | None = None,
                        progress: Any = None, **_: Any) -> DetectResult:
        calls.append(f"detect {video}")
        assert rules is not None and rules.anomaly
        frames = [FrameResult(index=i, score=0.9 if "bicycle" in c else 0.1, raw_score=1.0 if "bicycle" in c else 0,
                              anomalous="bicycle" in c, source="llm" if i % 2 else "reused")
                  for i, c in enumerate(captions)]
        if progress:
            progress("deduce", len(captions), len(captions))
        return DetectResult(video=video, scene=scene, rules_version=0, frames=frames, events=[],
                            llm_calls=len(captions) // 2, prompt_tokens=100 * len(captions),
                            completion_tokens=10 * len(captions), fallback_frames=1)
    return detect_captions


def test_rules_mode_plumbing(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("sleuth.graphs.detect_captions.detect_captions", _fake_detect(calls))
    result = run_caption_benchmark(tiny, rules_file=tiny / "rules.txt", mode="rules", output=tmp_path / "out",
                                   config=DetectConfig())
    assert calls == ["detect 01", "detect 02", "detect 03"]
    assert result.metrics.auc == 1.0 and result.rules.source == "file" and result.model
    assert result.cost.llm_calls == 10 + 5 + 2 and result.cost.llm_calls_per_frame == pytest.approx(17 / 35)
    assert result.cost.prompt_tokens == 3500 and result.cost.fallback_frames == 3
    assert result.cost.peak_rss_mb > 10 and result.cost.s_per_frame >= 0
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["metrics"]["per_video"][1]["auc"] is None  # video 02 is all normal
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert len(rows) == 35 and rows[6] == {"video": "01", "frame": "6", "label": "1", "score": "0.900000",
                                           "decision": "1", "source": "reused", "raw_score": "1.000000"}
    assert sorted(p.name for p in (tmp_path / "out" / "plots").iterdir()) == [
        "video_01.png", "video_02.png", "video_03.png"]


def test_induced_mode_reads_no_label_before_the_rules_and_scores(tiny: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def induce(captions_by_video: dict[str, list[str]], *, per_video: int = 20, scene: str = "default",
               **_: Any) -> RuleSet:
        calls.append(f"induce {sorted(captions_by_video)} {per_video}")
        assert all(isinstance(c, str) for captions in captions_by_video.values() for c in captions)
        return RuleSet.parse(RULES, scene=scene, source="induced")

    real_load_labels = datasets.load_labels

    def load_labels_spy(dataset: Any) -> Any:
        calls.append("labels")
        return real_load_labels(dataset)

    real_read = datasets._read_labels

    def read_spy(video: str, path: Path) -> Any:
        assert "labels" in calls, "a label value was read before every score was final"
        return real_read(video, path)

    monkeypatch.setattr("sleuth.agents.rules.induce_from_unlabeled", induce)
    monkeypatch.setattr("sleuth.graphs.detect_captions.detect_captions", _fake_detect(calls))
    monkeypatch.setattr(caption_bench, "load_labels", load_labels_spy)
    monkeypatch.setattr(datasets, "_read_labels", read_spy)
    result = run_caption_benchmark(tiny, mode="induced", output=tmp_path / "out",
                                   config=DetectConfig(induce_sample=7), videos=["01", "02"], max_frames=12)
    assert calls == ["induce ['01', '02'] 7", "detect 01", "detect 02", "labels"]
    assert result.rules.source == "induced" and result.cost.induce_s is not None
    assert result.metrics.frames == 12 + 10 and (tmp_path / "out" / "rules.txt").read_text().startswith("**Anomaly")


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_keyword_mode_end_to_end(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "kw"
    result = sleuth("eval", "captions", "--data", str(tiny), "--keyword", "--output", str(out), "--videos", "01,03",
                    "--smoothing", "none")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    assert "frame AUC (all frames)" in result.stdout and "100.0" in result.stdout
    saved = json.loads((out / "result.json").read_text())
    assert saved["mode"] == "keyword" and saved["videos"] == ["01", "03"] and saved["metrics"]["auc"] == 1.0
    assert saved["config"]["smoothing"] == "none" and "eval captions" in saved["command"]
    assert {p.name for p in (out / "plots").iterdir()} == {"video_01.png", "video_03.png"}
    assert (out / "plots" / "video_01.png").read_bytes()[:4] == b"\x89PNG"
    assert "frames" in result.stderr and "videos" in result.stderr  # progress on stderr


def test_cli_wrong_layout_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello\n")
    line = one_error_line(sleuth("eval", "captions", "--data", str(tmp_path / "notes"), "--keyword"))
    assert "is not a caption dataset" in line and "test_frame_description" in line


def test_cli_mismatch_and_bad_rules_are_one_error_line(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", {"01": [0, 1], "02": [0, 0, 1]}, captions={"02": [NORMAL] * 4})
    line = one_error_line(sleuth("eval", "captions", "--data", str(root), "--keyword"))
    assert "video 02: 4 captions but 3 labels" in line
    good = make_dataset(tmp_path / "g", {"01": [0, 1]}, rules="**Normal Human Activities:**\n1. Walking\n")
    line = one_error_line(sleuth("eval", "captions", "--data", str(good), "--keyword"))
    assert "has no anomaly rules" in line
    line = one_error_line(sleuth("eval", "captions", "--data", str(good), "--rules", str(good / "rules.txt"),
                                 "--induce"))
    assert "exclude each other" in line
