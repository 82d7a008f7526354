"""The real tools application on a local Ray instance, reached through the 'ray' ToolSet.

The app is deployed once for the module from the packaged Serve config (only the HTTP port
changes), exactly as ``sleuth serve tools`` deploys it, and shut down at the end.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from sleuth.config import Settings
from sleuth.errors import SleuthError
from sleuth.serve.app import config_for, deploy, describe, packaged_config, wait_until_ready
from sleuth.tools.frames import Frame
from sleuth.tools.remote import RayServeTools
from sleuth.tools.toolset import open_tools

pytestmark = pytest.mark.slow

APP = "sleuth-tools-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Settings, int]]:
    import ray
    from ray import serve

    # Ray's unix sockets live under its temp dir, whose path must stay short.
    temp = Path(tempfile.mkdtemp(prefix="sr-", dir="/tmp"))
    port = _free_port()
    raw = yaml.safe_load(packaged_config().read_text())
    raw["http_options"]["port"] = port
    (temp / "tools.yaml").write_text(yaml.safe_dump(raw))
    settings = Settings(data_dir=temp / "data", cache_dir=temp / "cache",
                        tools={"backend": "ray", "serve_app": APP, "serve_config": temp / "tools.yaml"})
    _train_tiny_proposer(settings, "cam1")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp / "ray"), log_to_driver=False)
    try:
        started = time.monotonic()
        deploy(config_for(settings))
        wait_until_ready(APP, timeout_s=120)
        print(f"tools app ready in {time.monotonic() - started:.1f} s")
        yield settings, port
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _train_tiny_proposer(settings: Settings, scene: str) -> None:
    """A real (tiny) proposer checkpoint for the scene, so the replica scores with trained weights."""
    from sleuth.tools.proposer import Proposer, ProposerConfig, ProposerStore

    proposer = Proposer(ProposerConfig(epochs=1, samples_per_epoch=64, batch_size=16, memory_slots=8))
    proposer.fit([_clip(40)])
    ProposerStore(settings).save(scene, proposer)


@pytest.fixture(scope="module")
def tools(served: tuple[Settings, int]) -> RayServeTools:
    tools = open_tools(served[0])
    assert isinstance(tools, RayServeTools)
    return tools


def _clip(count: int = 8) -> list[Frame]:
    """A bright square crossing a dark street, ``count`` frames at 10 fps."""
    frames = []
    for index in range(count):
        image = np.full((96, 128, 3), 40, dtype=np.uint8)
        x = 10 + (10 * index) % 100
        image[40:70, x:x + 14] = 230
        frames.append(Frame(index, index / 10, image))
    return frames


def test_every_tool_is_deployed_healthy_with_its_configured_resources(served: tuple[Settings, int]) -> None:
    rows = {row.name: row for row in describe(APP)}
    assert set(rows) == {"Embedder", "Captioner", "Sampler", "Proposer", "Retriever", "ToolsIngress"}
    assert all(row.status == "HEALTHY" and row.running >= 1 for row in rows.values())
    assert rows["Embedder"].resources["CPU"] == 0.5 and rows["Captioner"].autoscaling == (1, 2)
    assert rows["Embedder"].user_config == {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}
    assert rows["Retriever"].resources["CPU"] == 0.25


def test_embedder_returns_unit_vectors_and_batches_concurrent_callers(tools: RayServeTools) -> None:
    texts = ["a man rides a bicycle", "a person cycles on a bike", "the sky is cloudy today"]
    vectors = tools.embedder(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert tools.embedder([]).shape == (0, 384)
    many = [f"person number {index} walks across the plaza" for index in range(24)]
    with ThreadPoolExecutor(8) as pool:  # concurrent calls are merged into batches on the replica
        one_by_one = list(pool.map(lambda text: tools.embedder([text]), many))
    assert np.allclose(np.vstack(one_by_one), tools.embedder(many), atol=1e-5)


def test_sampler_matches_the_in_process_sampler(tools: RayServeTools) -> None:
    from sleuth.tools.sampler import AnomalyFocusedSampler

    scores = np.concatenate([np.zeros(60), np.linspace(0, 1, 20), np.zeros(60)])
    picks = tools.sampler.sample(scores)
    assert picks == AnomalyFocusedSampler(n=16, tau=0.1).sample(scores)  # n, tau from the YAML's user_config


def test_captioner_describes_frames_like_the_in_process_one(tools: RayServeTools) -> None:
    from sleuth.tools.captioners import build_captioner

    frames = _clip()
    captions = tools.captioner.caption(frames)
    assert len(captions) == len(frames) and all(isinstance(caption, str) and caption for caption in captions)
    assert captions == build_captioner(Settings()).caption(frames)
    assert tools.captioner.caption([]) == []


def test_proposer_scores_a_calibrated_scene_like_the_in_process_one(
        tools: RayServeTools, served: tuple[Settings, int]) -> None:
    from sleuth.tools.proposer import ProposerStore

    frames = _clip(12)
    remote = tools.proposer("cam1").score(frames)
    local = ProposerStore(served[0]).load("cam1").score(frames)
    assert remote.frame_indices == list(range(12)) and remote.threshold == local.threshold
    assert np.allclose(remote.frame_scores, local.frame_scores, atol=1e-4)


def test_retriever_answers_like_the_in_process_one(tools: RayServeTools) -> None:
    from sleuth.tools.retriever import build_retriever

    local = build_retriever(Settings())  # the embedded default: captions embedded with MiniLM
    remote = tools.retriever
    assert (remote.name, remote.vector, remote.dimension) == (local.name, local.vector, 384)
    queries = ["a person rides a bicycle", "a man walking a dog"]
    assert np.allclose(remote.embed_queries(queries), local.embed_queries(queries), atol=1e-5)
    frames = _clip(3)
    images = [frame.image for frame in frames]
    captions = ["a man on a bicycle on the street", "a dog on the lawn", "a white car"]
    items = remote.embed_items(images, captions)
    assert items.dtype == np.float32 and np.allclose(items, local.embed_items(images, captions), atol=1e-5)
    assert remote.embed_queries([]).shape == (0, 384)
    with ThreadPoolExecutor(6) as pool:  # concurrent calls are merged into batches on the replica
        one_by_one = list(pool.map(lambda i: remote.embed_items([images[i % 3]], [captions[i % 3]]), range(6)))
    assert np.allclose(np.vstack(one_by_one), np.vstack([items, items]), atol=1e-5)
    with pytest.raises(SleuthError, match="embeds item captions: got images only"):
        remote.embed_items(images, [])


def test_proposer_errors_come_back_as_sleuth_errors(tools: RayServeTools) -> None:
    from sleuth.tools.proposer import ProposerError

    with pytest.raises(ProposerError, match="no proposer for scene 'lobby'.*sleuth calibrate proposer"):
        tools.proposer("lobby").score(_clip())


def test_another_app_name_is_not_running(served: tuple[Settings, int]) -> None:
    other = served[0].model_copy(update={"tools": served[0].tools.model_copy(update={"serve_app": "elsewhere"})})
    with pytest.raises(SleuthError) as error:
        open_tools(other)
    assert str(error.value) == "Ray Serve app 'elsewhere' is not running: start it with `sleuth serve tools`"


def test_http_ingress_embeds_and_samples(served: tuple[Settings, int]) -> None:
    base = f"http://127.0.0.1:{served[1]}/tools"

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    with urllib.request.urlopen(base, timeout=30) as response:
        assert json.loads(response.read())["tools"] == ["Embedder", "Captioner", "Sampler", "Proposer", "Retriever"]
    assert post("/sample", {"scores": [0, 0, 1, 0]})["indices"] == [0, 1, 2, 3]
    vectors = np.asarray(post("/embed", {"texts": ["a person walks"]})["vectors"])
    assert vectors.shape == (1, 384)
    assert np.asarray(post("/retrieve", {"texts": ["a person walks"]})["vectors"]).shape == (1, 384)


@pytest.fixture
def cli_env(served: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI sees the same settings as the fixture, so it finds (and re-applies) the same app."""
    settings = served[0]
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("SLEUTH_TOOLS__SERVE_APP", APP)
    monkeypatch.setenv("SLEUTH_TOOLS__SERVE_CONFIG", str(settings.tools.serve_config))
    monkeypatch.setenv("SLEUTH_TOOLS__BACKEND", "ray")


@pytest.mark.usefixtures("cli_env")
def test_cli_serve_tools_detached_reports_each_tool_with_its_resources() -> None:
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["serve", "tools", "--detach", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert f"'{APP}' ready in" in result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()
            if line.split() and line.split()[0] in ("Embedder", "Captioner", "Sampler", "Proposer", "Retriever")}
    assert set(rows) == {"Embedder", "Captioner", "Sampler", "Proposer", "Retriever"}
    assert all(row[1] == "healthy" for row in rows.values())
    assert rows["Embedder"][3:5] == ["0.5", "0"]  # CPU and GPU per replica, from the YAML


@pytest.mark.usefixtures("cli_env")
def test_cli_serve_status_shows_the_running_app() -> None:
    from sleuth.cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["serve", "status", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["status"] == "RUNNING"
    assert {row["name"]: row["status"] for row in payload["deployments"]}["Embedder"] == "HEALTHY"
