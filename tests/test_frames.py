"""FrameReader: video files, image folders and streams as timestamped RGB frames."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sleuth.tools.frames import FrameReader, VideoError, read_frames

from tests.synthetic_video import FPS, truncate, two_movers, write_images, write_video

N_FRAMES = 40


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return two_movers(N_FRAMES)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, clip: list[np.ndarray]) -> dict[str, Path]:
    """The same 40-frame clip as mp4, avi, mkv, a faststart mp4 and a folder of PNGs."""
    folder = tmp_path_factory.mktemp("clips")
    paths = {suffix: write_video(folder / f"clip.{suffix}", clip, FPS) for suffix in ("mp4", "avi", "mkv")}
    paths["faststart"] = write_video(folder / "faststart.mp4", clip, FPS, faststart=True)
    paths["folder"] = write_images(folder / "pngs", clip)
    return paths


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_one_line_with_hint(error: VideoError) -> None:
    assert error.hint
    assert "\n" not in str(error)
    assert str(error).endswith(error.hint)


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv", "folder"])
def test_every_source_kind_gives_the_same_frames_and_times(
        kind: str, clips: dict[str, Path], clip: list[np.ndarray]) -> None:
    reader = FrameReader(clips[kind], folder_fps=FPS)
    frames = reader.read()

    assert len(frames) == N_FRAMES
    assert [frame.index for frame in frames] == list(range(N_FRAMES))
    assert all(frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8 for frame in frames)
    assert [frame.time_s for frame in frames] == pytest.approx([i / FPS for i in range(N_FRAMES)], abs=1e-3)
    assert reader.skipped == 0
    # RGB, not BGR, and the frame at index i is the clip's frame i (lossy codecs: close, PNG: exact)
    tolerance = 0.0 if kind == "folder" else 6.0
    assert all(mean_error(frame.image, clip[frame.index]) <= tolerance for frame in frames)
    red_pixel = frames[5].image[22, 28]  # inside the red rectangle at t=0.5s (x 22..36, y 12..32)
    assert red_pixel[0] > 150 and red_pixel[2] < 80


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv", "folder"])
def test_info_reports_rate_count_and_size(kind: str, clips: dict[str, Path]) -> None:
    info = FrameReader(clips[kind], folder_fps=FPS).info

    assert (info.fps, info.frame_count, info.width, info.height) == (pytest.approx(FPS), N_FRAMES, 160, 120)
    assert info.duration_s == pytest.approx(N_FRAMES / FPS)


def test_reader_is_reusable_and_read_frames_is_the_shortcut(clips: dict[str, Path]) -> None:
    reader = FrameReader(clips["mp4"], max_frames=5)
    first, second = reader.read(), reader.read()

    assert [f.index for f in first] == [f.index for f in second] == [0, 1, 2, 3, 4]
    assert np.array_equal(first[4].image, second[4].image)
    assert [f.index for f in read_frames(clips["mp4"], max_frames=5)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["mp4", "folder"])
def test_fps_sampling_keeps_about_the_asked_rate_with_source_times(kind: str, clips: dict[str, Path]) -> None:
    every_fourth = FrameReader(clips[kind], fps=FPS / 4, folder_fps=FPS).read()
    assert [f.index for f in every_fourth] == list(range(0, N_FRAMES, 4))
    assert [f.time_s for f in every_fourth] == pytest.approx([i / FPS for i in range(0, N_FRAMES, 4)], abs=1e-3)

    # 3 fps does not divide 10 fps: the k-th frame kept is the first one at or after k/3 s (no drift)
    odd_rate = FrameReader(clips[kind], fps=3.0, folder_fps=FPS).read()
    assert len(odd_rate) == 12  # 0, 1/3, ..., 11/3 s within the 4 s clip
    for k, frame in enumerate(odd_rate):
        assert k / 3.0 - 1e-3 <= frame.time_s < k / 3.0 + 1 / FPS

    assert len(FrameReader(clips[kind], fps=FPS * 3, folder_fps=FPS).read()) == N_FRAMES  # faster than source: all


@pytest.mark.parametrize("kind", ["mp4", "avi", "folder"])
def test_start_stop_and_max_frames_cut_by_source_index(kind: str, clips: dict[str, Path]) -> None:
    cut = FrameReader(clips[kind], start=5, stop=15, folder_fps=FPS).read()
    assert [f.index for f in cut] == list(range(5, 15))
    assert cut[0].time_s == pytest.approx(5 / FPS, abs=1e-3)

    assert [f.index for f in FrameReader(clips[kind], start=30, max_frames=4, folder_fps=FPS)] == [30, 31, 32, 33]
    assert FrameReader(clips[kind], start=N_FRAMES + 10, folder_fps=FPS).read() == []

    sampled = FrameReader(clips[kind], fps=FPS / 4, start=10, stop=30, folder_fps=FPS).read()
    assert [f.index for f in sampled] == [10, 14, 18, 22, 26]


def test_invalid_fps_is_a_one_line_error(clips: dict[str, Path]) -> None:
    with pytest.raises(VideoError) as caught:
        FrameReader(clips["mp4"], fps=0)
    assert_one_line_with_hint(caught.value)


def test_folder_is_read_in_natural_order(tmp_path: Path, clip: list[np.ndarray]) -> None:
    # 1.png, 2.png, ..., 10.png, 11.png: plain sorting would put 10 and 11 before 2
    folder = write_images(tmp_path / "frames", clip[:12], ".png")
    (folder / "notes.txt").write_text("not a frame")

    frames = FrameReader(folder).read()

    assert len(frames) == 12
    assert all(np.array_equal(frame.image, clip[frame.index]) for frame in frames)


def test_jpg_folder_uses_folder_fps(tmp_path: Path, clip: list[np.ndarray]) -> None:
    frames = FrameReader(write_images(tmp_path / "jpgs", clip[:6], ".jpg"), folder_fps=2.0).read()

    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert all(mean_error(frame.image, clip[frame.index]) < 6 for frame in frames)


def test_corrupt_image_in_a_folder_is_skipped_and_counted(tmp_path: Path, clip: list[np.ndarray]) -> None:
    folder = write_images(tmp_path / "frames", clip[:10])
    (folder / "4.png").write_bytes(b"\x89PNG broken" + bytes(200))

    reader = FrameReader(folder)
    frames = reader.read()

    assert len(frames) == 9 and reader.skipped == 1
    assert 3 not in [f.index for f in frames]  # 4.png is the fourth file: index 3, times of the others unchanged
    assert frames[3].index == 4 and frames[3].time_s == pytest.approx(4 / 25.0)

    with pytest.raises(VideoError) as caught:
        FrameReader(folder, on_error="raise").read()
    assert "4.png" in str(caught.value)
    assert_one_line_with_hint(caught.value)


def test_missing_path_raises_at_construction(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as caught:
        FrameReader(tmp_path / "nowhere.mp4")
    assert "not found" in str(caught.value)
    assert_one_line_with_hint(caught.value)


def test_empty_file_and_empty_folder_raise_at_construction(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "no-images").mkdir()
    for source in (tmp_path / "empty.mp4", tmp_path / "no-images"):
        with pytest.raises(VideoError) as caught:
            FrameReader(source)
        assert_one_line_with_hint(caught.value)


@pytest.mark.parametrize("backend", ["auto", "opencv"])
@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(6000), b"just some text\n" * 50],
                         ids=["random-bytes", "text"])
def test_a_file_that_is_not_a_video_raises_one_line(tmp_path: Path, content: bytes, backend: str) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)

    with pytest.raises(VideoError) as caught:
        FrameReader(path, backend=backend).read()  # type: ignore[arg-type]
    assert "fake.mp4" in str(caught.value)
    assert_one_line_with_hint(caught.value)


@pytest.mark.parametrize("kind", ["avi", "faststart"])
def test_truncated_video_keeps_the_frames_before_the_cut(
        kind: str, clips: dict[str, Path], clip: list[np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / clips[kind].name
    path.write_bytes(clips[kind].read_bytes())
    truncate(path, 0.6)

    reader = FrameReader(path)
    frames = reader.read()

    assert 10 <= len(frames) < N_FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(mean_error(f.image, clip[f.index]) < 6 for f in frames[:-1])  # the last may be half decoded
    assert reader.skipped == N_FRAMES - len(frames)  # the header's frame count tells what is missing

    with pytest.raises(VideoError) as caught:
        FrameReader(path, on_error="raise").read()
    assert "truncated" in str(caught.value)
    assert_one_line_with_hint(caught.value)


def test_truncated_mp4_with_its_index_at_the_end_cannot_be_opened(clips: dict[str, Path], tmp_path: Path) -> None:
    # A plain mp4 writes its index (moov) last: a cut-off copy has no index, so nothing is readable.
    path = tmp_path / "cut.mp4"
    path.write_bytes(clips["mp4"].read_bytes())
    truncate(path, 0.6)

    with pytest.raises(VideoError) as caught:
        FrameReader(path).read()
    assert "cannot open" in str(caught.value)
    assert_one_line_with_hint(caught.value)


def test_truncated_mkv_reads_what_is_there(clips: dict[str, Path], tmp_path: Path) -> None:
    # Matroska does not store a frame count, so the cut is not detected: fewer frames, no error.
    path = tmp_path / "cut.mkv"
    path.write_bytes(clips["mkv"].read_bytes())
    truncate(path, 0.6)

    frames = FrameReader(path, on_error="raise").read()
    assert 10 <= len(frames) < N_FRAMES


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_opencv_backend_reads_the_same_file(kind: str, clips: dict[str, Path]) -> None:
    pyav = FrameReader(clips[kind], backend="pyav").read()
    reader = FrameReader(clips[kind], backend="opencv")
    opencv = reader.read()

    assert (reader.info.fps, reader.info.frame_count, reader.info.width) == (pytest.approx(FPS), N_FRAMES, 160)
    assert len(opencv) == len(pyav) == N_FRAMES
    assert [f.time_s for f in opencv] == pytest.approx([f.time_s for f in pyav], abs=1e-3)
    assert all(mean_error(a.image, b.image) < 3 for a, b in zip(opencv, pyav, strict=True))
    assert [f.index for f in FrameReader(clips[kind], backend="opencv", fps=FPS / 2, start=4, stop=12)] == [4, 6, 8, 10]


def test_unreachable_stream_raises_one_line_quickly() -> None:
    reader = FrameReader("rtsp://127.0.0.1:9/none", timeout_s=2)  # streams are not opened until read

    started = time.monotonic()
    with pytest.raises(VideoError) as caught:
        reader.read()
    assert time.monotonic() - started < 5
    assert "rtsp://127.0.0.1:9/none" in str(caught.value)
    assert_one_line_with_hint(caught.value)


def test_http_stream_gives_the_same_frames_as_the_file_and_a_404_is_one_line(
        clips: dict[str, Path], tmp_path: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    # Faststart (index first), as web-ready files are: Python's http.server ignores Range requests, so
    # FFmpeg cannot seek back from an index at the end; a 9.6 MB plain mp4 served this way gave 0 frames.
    web = tmp_path / "web"
    web.mkdir()
    (web / "clip.mp4").write_bytes(clips["faststart"].read_bytes())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the reader's probe hangs up before the body is sent: expected, not an error

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(web)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        stream = FrameReader(f"{base}/clip.mp4", timeout_s=5)
        streamed = stream.read()
        direct = FrameReader(web / "clip.mp4").read()

        assert len(streamed) == len(direct) == N_FRAMES and stream.skipped == 0
        assert [f.index for f in streamed] == [f.index for f in direct]
        assert [f.time_s for f in streamed] == pytest.approx([f.time_s for f in direct], abs=1e-6)
        assert all(f.image.shape == (120, 160, 3) for f in streamed)
        assert all(np.array_equal(a.image, b.image) for a, b in zip(streamed, direct, strict=True))
        assert (stream.info.fps, stream.info.frame_count) == (pytest.approx(FPS), N_FRAMES)

        with pytest.raises(VideoError) as caught:
            FrameReader(f"{base}/missing.mp4", timeout_s=5).read()
        assert "404" in str(caught.value) and f"{base}/missing.mp4" in str(caught.value)
        assert_one_line_with_hint(caught.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv"])
def test_a_far_start_is_reached_by_seeking_with_the_same_frames_as_decoding_up_to_it(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--start` deep into a long file jumps to the key frame before it (not a decode from frame 0),
    and gives the very frames, numbers and times a read from the beginning gives."""
    import sleuth.tools.frames as frames

    n = int(FPS * 16)  # 16 s: a start at 13 s is past SEEK_AFTER_S
    path = write_video(tmp_path / f"long.{kind}", two_movers(n), FPS, key_every=25)
    start, stop = int(FPS * 13) + 3, int(FPS * 13) + 13
    jumps: list[int] = []
    seek = frames.FrameReader._seek

    def spy(self: FrameReader, container: object) -> object:
        found = seek(self, container)
        jumps.append(-1 if found is None else found[0])
        return found

    monkeypatch.setattr(frames.FrameReader, "_seek", spy)
    seeked = FrameReader(path, start=start, stop=stop).read()
    assert jumps == [start - start % 25]  # it jumped to the key frame before the start
    monkeypatch.setattr(frames, "SEEK_AFTER_S", 1e9)
    decoded = FrameReader(path, start=start, stop=stop).read()
    assert [f.index for f in seeked] == [f.index for f in decoded] == list(range(start, stop))
    assert [f.time_s for f in seeked] == pytest.approx([f.time_s for f in decoded], abs=1e-6)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(seeked, decoded, strict=True))
