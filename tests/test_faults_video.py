"""Faulty footage in ``sleuth detect``: a truncated video is an error unless ``--allow-partial`` (then a
warning on stderr and in the report), ``--start`` past the end names the video's length, and Ctrl-C
says that rerunning resumes.

Synthetic clips and a rules-only scene (hashed-word embedder, scripted LLM), so these run in seconds;
the real clips in ../shared/data (skipped where absent) check that complete files do not trip the check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sleuth.agents.schemas import Rule, RuleSet
from sleuth.cli.main import app
from sleuth.config import load_settings
from sleuth.memory.rules import RuleMemory
from sleuth.tools.frames import FrameReader, VideoError, VideoInfo, length_tolerance
from typer.testing import CliRunner, Result

from tests.conftest import HashEmbedder, ScriptedOpenAI
from tests.synthetic_video import FPS, truncate, two_movers, write_images, write_video

N_FRAMES = 40
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
RULES = RuleSet(scene="cam1", rules=[Rule(text="an object moving very fast", kind="anomaly"),
                                     Rule(text="2 moving objects", kind="normal")])


@pytest.fixture(scope="module")
def clip_avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "clip.avi", two_movers(N_FRAMES), FPS)


@pytest.fixture
def cut_avi(clip_avi: Path, tmp_path: Path) -> Path:
    """The clip with the second half of its bytes gone: its header still declares 40 frames."""
    path = tmp_path / "cut.avi"
    path.write_bytes(clip_avi.read_bytes())
    return truncate(path, 0.5)


def one_error_line(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- the frame reader --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_truncated_file_is_an_error_unless_partial_reads_are_allowed(cut_avi: Path, backend: str) -> None:
    with pytest.raises(VideoError) as caught:
        FrameReader(cut_avi, backend=backend, allow_partial=False).read()  # type: ignore[arg-type]
    error = caught.value
    assert "\n" not in str(error) and error.hint and "--allow-partial" in error.hint
    assert re.fullmatch(r".*cut\.avi: read \d+ of the 40 frames its header declares \(the file looks truncated "
                        r"or corrupt\)", error.message)

    reader = FrameReader(cut_avi, backend=backend, allow_partial=True)  # type: ignore[arg-type]
    frames = reader.read()
    assert 10 <= len(frames) < N_FRAMES - length_tolerance(N_FRAMES)
    assert (reader.frames_read, reader.frames_declared) == (len(frames), N_FRAMES)
    assert reader.shortfall == f"{cut_avi}: read {len(frames)} of the 40 frames its header declares (the file " \
                               "looks truncated or corrupt)"
    assert reader.skipped == N_FRAMES - len(frames)


def test_a_range_inside_what_is_there_is_fine_and_one_past_the_cut_is_not(cut_avi: Path) -> None:
    inside = FrameReader(cut_avi, start=2, stop=8, allow_partial=False)
    assert [f.index for f in inside.read()] == list(range(2, 8)) and inside.shortfall is None
    with pytest.raises(VideoError, match=r"read \d+ of the 35 frames its header declares for frames 5-39"):
        FrameReader(cut_avi, start=5, allow_partial=False).read()
    with pytest.raises(VideoError, match="no frame of the range was read"):  # nothing at all to analyse
        FrameReader(cut_avi, start=30, allow_partial=True).read()


def test_complete_synthetic_files_and_frame_folders_do_not_trip_the_check(clip_avi: Path, tmp_path: Path) -> None:
    mp4 = write_video(tmp_path / "clip.mp4", two_movers(N_FRAMES), FPS)
    for path in (clip_avi, mp4):
        for backend in ("pyav", "opencv"):
            reader = FrameReader(path, backend=backend, allow_partial=False)  # type: ignore[arg-type]
            assert len(reader.read()) == N_FRAMES and reader.shortfall is None
            assert (reader.frames_read, reader.frames_declared) == (N_FRAMES, N_FRAMES)
    folder = FrameReader(write_images(tmp_path / "pngs", two_movers(6)), allow_partial=False)
    assert len(folder.read()) == 6 and folder.frames_declared is None  # a folder declares nothing


def test_a_header_off_by_a_frame_or_two_is_tolerated(clip_avi: Path) -> None:
    def reader_declaring(count: int) -> FrameReader:
        reader = FrameReader(clip_avi, backend="opencv", allow_partial=False)
        reader._info = VideoInfo(str(clip_avi), FPS, count, 160, 120)  # what a sloppy muxer writes
        return reader

    assert len(reader_declaring(N_FRAMES + 2).read()) == N_FRAMES
    with pytest.raises(VideoError, match="read 40 of the 50 frames"):
        reader_declaring(N_FRAMES + 10).read()
    assert length_tolerance(40) == 3 and length_tolerance(795) == 16


@pytest.mark.skipif(not (VIDEOS / "vtest.avi").is_file(), reason="needs ../shared/data/videos")
@pytest.mark.parametrize(("name", "backend"), [("vtest.avi", "pyav"), ("vtest.avi", "opencv"),
                                               ("xd_GoldenEye_frames.mp4", "pyav")])
def test_the_real_clips_are_read_whole_without_a_warning(name: str, backend: str) -> None:
    reader = FrameReader(VIDEOS / name, backend=backend, allow_partial=False)  # type: ignore[arg-type]
    count = sum(1 for _ in reader)
    assert reader.shortfall is None and count == reader.frames_read == reader.frames_declared


@pytest.mark.skipif(not (VIDEOS / "vtest.avi").is_file(), reason="needs ../shared/data/videos")
def test_vtest_cut_to_300_kb_is_caught(tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes((VIDEOS / "vtest.avi").read_bytes()[:300_000])
    with pytest.raises(VideoError) as caught:
        FrameReader(cut, allow_partial=False).read()
    assert f"{cut}: read 16 of the 795 frames its header declares (the file looks truncated or corrupt)" in str(
        caught.value)


# -- sleuth detect -----------------------------------------------------------------------------------------


@pytest.fixture
def scene(monkeypatch: pytest.MonkeyPatch, scripted_openai: ScriptedOpenAI) -> str:
    """A rules-only scene 'cam1' (no proposer: every frame is captioned and judged)."""
    monkeypatch.setattr("sleuth.tools.embedder.TextEmbedder", lambda config=None: HashEmbedder())
    with RuleMemory(load_settings(), HashEmbedder()) as memory:
        memory.save(RULES)
    return "cam1"


def detect(*args: str) -> Result:
    return CliRunner().invoke(app, ["detect", *args])


def test_detect_on_a_truncated_video_fails_in_one_line_naming_allow_partial(scene: str, cut_avi: Path) -> None:
    line = one_error_line(detect(str(cut_avi), "--scene", scene))
    assert "cut.avi: read" in line and "of the 40 frames its header declares" in line
    assert "truncated or corrupt" in line and "--allow-partial" in line


def test_detect_with_allow_partial_warns_on_stderr_and_in_the_report(scene: str, cut_avi: Path,
                                                                       tmp_path: Path) -> None:
    html, as_json = tmp_path / "report.html", tmp_path / "report.json"
    result = detect(str(cut_avi), "--scene", scene, "--allow-partial", "--report", str(html), "--json", str(as_json))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "of the 40 frames its header declares" in warnings[0], result.stderr
    read = int(warnings[0].split(" read ")[1].split(" ")[0])
    assert f"event(s) in {read} frames" in result.stdout

    report = json.loads(as_json.read_text())
    assert report["warnings"] == [warnings[0].removeprefix("warning: ")] and len(report["frames"]) == read
    page = html.read_text()
    assert 'class="warnings"' in page and "of the 40 frames its header declares" in page
    assert page.index('class="warnings"') < page.index('class="plot"')  # near the top, before the results

    again = detect(str(cut_avi), "--scene", scene, "--allow-partial")  # the finished run, from its checkpoint
    assert again.exit_code == 0 and "warning:" in again.stderr
    assert one_error_line(detect(str(cut_avi), "--scene", scene)), "without the flag it still fails"


def test_detect_on_a_complete_video_has_no_warning(scene: str, clip_avi: Path, tmp_path: Path) -> None:
    as_json = tmp_path / "report.json"
    result = detect(str(clip_avi), "--scene", scene, "--json", str(as_json))
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr and f"in {N_FRAMES} frames" in result.stdout
    assert json.loads(as_json.read_text())["warnings"] == []


def test_start_past_the_end_names_the_video_length(scene: str, clip_avi: Path) -> None:
    line = one_error_line(detect(str(clip_avi), "--scene", scene, "--start", "5000"))
    assert f"--start 5000 is past the end of {clip_avi} ({N_FRAMES} frames, 4.0 s)" in line
    assert "None" not in line


@pytest.mark.skipif(not (VIDEOS / "vtest.avi").is_file(), reason="needs ../shared/data/videos")
def test_start_past_the_end_of_vtest(scene: str) -> None:
    line = one_error_line(detect(str(VIDEOS / "vtest.avi"), "--scene", scene, "--start", "5000"))
    assert "--start 5000 is past the end of" in line and "vtest.avi (795 frames, 79.5 s)" in line


def test_ctrl_c_in_detect_says_rerunning_resumes_and_it_does(scene: str, clip_avi: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def interrupting_progress() -> Iterator[object]:
        def update(stage: str, done: int, total: int) -> None:
            if stage == "caption":
                raise KeyboardInterrupt  # Ctrl-C while the frames are captioned

        yield update

    monkeypatch.setattr("sleuth.cli.pipeline.progress_bar", interrupting_progress)
    line = one_error_line(detect(str(clip_avi), "--scene", scene), code=130)
    assert line == "error: interrupted; rerun the same command to resume from the last checkpoint"

    reads: list[str] = []
    original = FrameReader.read
    monkeypatch.setattr(FrameReader, "read", lambda self: reads.append(self.source) or original(self))
    monkeypatch.setattr("sleuth.cli.pipeline.progress_bar", _quiet_progress)
    resumed = detect(str(clip_avi), "--scene", scene)
    assert resumed.exit_code == 0, resumed.output
    assert f"in {N_FRAMES} frames" in resumed.stdout
    assert len(reads) == 1, "the rerun resumes at captioning: the score stage's read is not repeated"


@contextmanager
def _quiet_progress() -> Iterator[object]:
    yield lambda stage, done, total: None


def test_ctrl_c_in_a_command_without_checkpoints_just_says_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(settings: object) -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr("sleuth.doctor.run_checks", interrupted)
    line = one_error_line(CliRunner().invoke(app, ["doctor"]), code=130)
    assert line == "error: interrupted"
