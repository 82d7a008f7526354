"""The tool interface graphs use (in-process backend) and the Serve config that deploys the tools.

The Ray Serve backend against a running app is in ``test_serve_real.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema
from sleuth.config import Settings, load_settings
from sleuth.errors import ConfigError, SleuthError
from sleuth.serve import deployments
from sleuth.serve.app import config_for, failure_reason, load_config, packaged_config
from sleuth.serve.deployments import ToolNotReady, replica_settings
from sleuth.tools.toolset import InProcessTools, open_tools

from tests.conftest import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]


def test_inprocess_tools_build_lazily_and_only_once() -> None:
    # A captioner that cannot be built must not stop a graph that never captions.
    settings = load_settings(tools={"captioner": {"kind": "transformers"}})
    embedder = HashEmbedder()
    tools = open_tools(settings, embedder=embedder)
    assert isinstance(tools, InProcessTools)
    assert tools.embedder is embedder and tools.sampler is tools.sampler
    vectors = tools.embedder(["a person runs", "a person walks"])
    assert vectors.shape == (2, 64)
    with pytest.raises(ConfigError, match="needs a model"):
        tools.captioner.caption([])


def test_inprocess_sampler_is_the_anomaly_focused_one() -> None:
    tools = open_tools(Settings())
    scores = np.concatenate([np.zeros(100), np.ones(10), np.zeros(100)])
    picks = tools.sampler.sample(scores)
    assert len(picks) == 16 and picks == sorted(set(picks))
    assert sum(100 <= pick < 110 for pick in picks) >= 5  # uniform sampling would put about 1 there


def test_proposers_load_once_per_scene_and_again_after_recalibration(tmp_path: Path) -> None:
    import os

    import numpy as np
    from sleuth.tools.frames import Frame
    from sleuth.tools.proposer import Proposer, ProposerConfig, ProposerStore

    settings = Settings(data_dir=tmp_path / "data")
    frames = []
    for i in range(30):
        image = np.full((64, 96, 3), 120, np.uint8)
        image[20:32, (3 * i) % 80:(3 * i) % 80 + 12] = 20
        frames.append(Frame(i, i / 10, image))
    proposer = Proposer(ProposerConfig(epochs=1, samples_per_epoch=64, batch_size=16, memory_slots=4))
    proposer.fit([frames])
    store = ProposerStore(settings)
    path = store.save("cam1", proposer)

    tools = open_tools(settings)
    first = tools.proposer("cam1")
    assert tools.proposer("cam1") is first  # loaded once
    store.save("cam1", proposer)  # recalibrated: a new checkpoint
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert tools.proposer("cam1") is not first
    assert len(tools.proposer("cam1").score(frames[:12]).frame_scores) == 12

def test_inprocess_proposer_for_an_uncalibrated_scene_says_how_to_calibrate(tmp_path: Path) -> None:
    tools = open_tools(Settings(data_dir=tmp_path))
    with pytest.raises(SleuthError, match="no proposer for scene 'lobby'.*sleuth calibrate proposer"):
        tools.proposer("lobby")


@pytest.mark.slow
def test_inprocess_embedder_is_the_packaged_minilm() -> None:
    vectors = open_tools(Settings()).embedder(["a man rides a bicycle", "a car on the walkway"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _run_sleuth_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run in a fresh interpreter, so this test process never connects to a Ray cluster."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLEUTH_", "RAY_ADDRESS"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**clean, **env})


def test_ray_backend_without_the_app_is_one_line_error(tmp_path: Path) -> None:
    app = f"sleuth-test-{uuid.uuid4().hex[:8]}"  # never deployed, even if some Ray cluster is running here
    code = ("from sleuth.tools.toolset import open_tools\n"
            "from sleuth.graphs.runtime import Runtime\n"
            "from sleuth.errors import SleuthError\n"
            "for build in (open_tools, Runtime.from_settings):  # graphs get their tools the same way\n"
            "    try:\n        build()\n    except SleuthError as exc:\n        print('ERR', exc)\n")
    result = _run_sleuth_python(code, tmp_path, SLEUTH_TOOLS__BACKEND="ray", SLEUTH_TOOLS__SERVE_APP=app)
    lines = [line for line in result.stdout.splitlines() if line.startswith("ERR")]
    assert lines == [f"ERR Ray Serve app '{app}' is not running: start it with `sleuth serve tools`"] * 2, result


def test_a_dead_cluster_address_fails_in_seconds_not_minutes(tmp_path: Path) -> None:
    """A stale address (the file `ray start` leaves behind, or RAY_ADDRESS) must not hang the CLI."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    app = f"sleuth-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = _run_sleuth_python("import sys; from sleuth.cli.main import app; sys.argv = ['sleuth', 'serve', "
                                "'status']; app()", tmp_path, SLEUTH_TOOLS__SERVE_APP=app, RAY_ADDRESS=dead)
    assert time.monotonic() - started < 60, "ray.init retried a dead address"
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: Ray Serve app '{app}' is not running: start it with `sleuth serve tools`"]


def test_graph_runtime_takes_its_embedder_from_the_in_process_toolset() -> None:
    from sleuth.graphs.runtime import Runtime
    from sleuth.tools.embedder import TextEmbedder
    from sleuth.tools.toolset import InProcessTools

    runtime = Runtime.from_settings(Settings())
    assert isinstance(runtime.tools, InProcessTools)
    assert isinstance(runtime.embedder, TextEmbedder) and runtime.embedder is runtime.tools.embedder


def test_serve_status_without_the_app_fails_in_one_line(tmp_path: Path) -> None:
    app = f"sleuth-test-{uuid.uuid4().hex[:8]}"
    result = _run_sleuth_python("import sys; from sleuth.cli.main import app; sys.argv = ['sleuth', 'serve', "
                                "'status']; app()", tmp_path, SLEUTH_TOOLS__SERVE_APP=app)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: Ray Serve app '{app}' is not running: start it with `sleuth serve tools`"]
    assert "Traceback" not in result.stderr


def test_packaged_config_is_a_valid_serve_config_for_a_small_cpu_machine() -> None:
    raw = yaml.safe_load(packaged_config().read_text())
    config = ServeDeploySchema.model_validate(raw)  # what `serve deploy` and KubeRay's serveConfigV2 accept
    (app,) = config.applications
    assert app.name == Settings().tools.serve_app and app.import_path == "sleuth.serve.app:build_app"
    bound = {deployment.name for deployment in (deployments.Embedder, deployments.Captioner, deployments.Sampler,
                                                deployments.Proposer, deployments.Retriever,
                                                deployments.ToolsIngress)}
    configured = {deployment.name for deployment in app.deployments}
    assert configured == bound == {*deployments.TOOL_DEPLOYMENTS, deployments.INGRESS}
    by_name = {deployment["name"]: deployment for deployment in raw["applications"][0]["deployments"]}
    assert not any(d["ray_actor_options"].get("num_gpus") for d in by_name.values())
    cpus = sum(d["ray_actor_options"]["num_cpus"] * d.get("autoscaling_config", {}).get("max_replicas",
               d.get("num_replicas", 1)) for d in by_name.values())
    assert cpus <= 2  # every replica, scaled up, fits two cores
    assert by_name["Embedder"]["max_ongoing_requests"] >= by_name["Embedder"]["user_config"]["max_batch_size"]


def test_packaged_config_ships_in_the_wheel_data() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"sleuth.serve" = ["*.yaml"]' in pyproject
    assert packaged_config().parent == ROOT / "serve"


def test_invalid_serve_configs_fail_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("applications: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("applications:\n  - name: sleuth-tools\n    import_path: sleuth.serve.app:build_app\n"
                     "    deployments:\n      - name: Embedder\n        num_replicas: -1\n")
    with pytest.raises(ConfigError, match="invalid Serve config .*num_replicas") as error:
        load_config(wrong)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="cannot read the Serve config"):
        load_config(tmp_path / "missing.yaml")


def test_replicas_rebuild_the_settings_of_the_process_that_deploys(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__KIND", "litellm")
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("SLEUTH_TOOLS__SERVE_APP", "cam-tools")
    settings = load_settings(data_dir=tmp_path / "data")
    config = config_for(settings)
    (app,) = config.applications
    assert app.name == "cam-tools"  # the name the 'ray' backend looks up
    for name in ("SLEUTH_TOOLS__CAPTIONER__KIND", "SLEUTH_VLM__MODEL", "SLEUTH_TOOLS__SERVE_APP"):
        monkeypatch.delenv(name)  # a replica on another node does not share this environment
    assert replica_settings(app.args) == settings


def test_yaml_args_override_the_deploying_settings_which_override_the_args_config(tmp_path: Path) -> None:
    custom = tmp_path / "tools.yaml"
    raw = yaml.safe_load(packaged_config().read_text())
    raw["applications"][0]["args"] = {"settings": {"embedder": {"batch_size": 7}}}
    custom.write_text(yaml.safe_dump(raw))
    toml = tmp_path / "sleuth.toml"
    toml.write_text('[embedder]\nbatch_size = 5\ndevice = "cpu"\n[tools.captioner]\nkind = "litellm"\n')
    deploying = load_settings(tools={"serve_config": custom, "captioner": {"kind": "transformers"}})
    (app,) = config_for(deploying).applications
    rebuilt = replica_settings({**app.args, "config": str(toml)})
    assert rebuilt.embedder.batch_size == 7  # the YAML's args.settings
    assert rebuilt.tools.captioner.kind == "transformers"  # set where `sleuth serve tools` ran
    assert rebuilt.embedder.device == "cpu"  # only in args.config
    with pytest.raises(SleuthError, match="cannot read the app's sleuth config"):
        replica_settings({"config": str(tmp_path / "nope.toml")})


def test_a_tool_that_fails_to_load_fails_readiness_with_its_reason() -> None:
    sampler = deployments.Sampler.func_or_class({})
    sampler.check_health()
    assert sampler.sample(np.arange(100.0)) == sorted(sampler.sample(np.arange(100.0)))
    sampler.reconfigure({"n": 3, "tau": 0.5})
    assert len(sampler.sample(np.arange(100.0))) == 3
    sampler.reconfigure({"n": 0})
    with pytest.raises(ToolNotReady, match="Sampler failed to load: ValueError: n must be at least 1"):
        sampler.check_health()
    with pytest.raises(ToolNotReady):
        sampler.sample([1.0, 2.0])


def test_failure_reason_is_the_last_line_of_a_replica_traceback() -> None:
    message = ("The deployment failed to start 3 times in a row. Error:\n\x1b[36mray::ServeReplica\x1b[39m\n"
               "Traceback (most recent call last):\n  File \"x.py\", line 1, in check_health\n"
               "sleuth.serve.deployments.ToolNotReady: Embedder failed to load: cannot load embedder 'x': "
               "set embedder.model to a local model folder\n")
    assert failure_reason(message) == ("Embedder failed to load: cannot load embedder 'x': "
                                       "set embedder.model to a local model folder")


def test_the_rayservice_example_in_the_docs_is_a_valid_serve_config() -> None:
    text = (ROOT / "docs" / "serving.md").read_text()
    block = text.split("```yaml\napiVersion: ray.io/v1\n", 1)[1].split("```", 1)[0]
    manifest = yaml.safe_load("apiVersion: ray.io/v1\n" + block)
    assert manifest["kind"] == "RayService"
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "sleuth.serve.app:build_app" and app.name == Settings().tools.serve_app
    assert {d.name for d in app.deployments} == {*deployments.TOOL_DEPLOYMENTS, deployments.INGRESS}
