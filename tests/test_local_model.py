"""The real packaged Qwen2.5-Coder-0.5B, joined, verified and served by llama.cpp in-process."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from sleuth.llm import packaged, server
from sleuth.llm.gateway import Gateway

pytestmark = pytest.mark.slow


class SceneVerdict(BaseModel):
    vehicle: Literal["bicycle", "car", "none"]
    anomalous: bool
    reason: str


def test_schema_constrained_answer_from_the_local_model(model_cache: Path) -> None:
    gateway = Gateway()
    verdict = gateway.structured(
        [{"role": "system", "content": "You check surveillance captions of a pedestrian-only "
          "walkway. Vehicles of any kind are anomalous there."},
         {"role": "user", "content": "Caption: 'A man rides a bicycle through a crowd of people "
          "walking on the walkway.' Which vehicle is present, and is the scene anomalous?"}],
        SceneVerdict, max_tokens=120)
    assert isinstance(verdict, SceneVerdict)
    assert verdict.vehicle == "bicycle"
    record = gateway.usage.records[-1]
    assert record.model == "qwen2.5-coder-0.5b" and record.provider == "llama.cpp"
    assert record.prompt_tokens > 20 and record.completion_tokens > 5
    served = server.running()
    assert served is not None and served.api_base.startswith("http://127.0.0.1:")
    assert packaged.cached_and_verified(packaged.QWEN_05B, model_cache) == served.path


def test_logprobs_give_a_continuous_yes_no_score() -> None:
    result = Gateway().chat([{"role": "user", "content": "Is a car driving through a crowd of "
                              "pedestrians on a walkway unusual? Answer Yes or No."}],
                            max_tokens=1, top_logprobs=5)
    assert result.logprobs is not None
    top = result.logprobs[0]["top_logprobs"]
    assert {"Yes", "No"} <= set(top)
    assert result.text.strip() == max(top, key=top.get)  # greedy decoding picks the top token
    p_yes = math.exp(top["Yes"]) / (math.exp(top["Yes"]) + math.exp(top["No"]))
    assert 0.0 < p_yes < 1.0


def test_cli_ask_streams_from_the_local_model(model_cache: Path) -> None:
    binary = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"
    result = subprocess.run([binary, "ask", "Name one colour of a traffic light. One word."],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ),
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert any(colour in result.stdout.lower() for colour in ("red", "green", "yellow", "amber"))
    assert "qwen2.5-coder-0.5b" in result.stderr and "trace " in result.stderr


def test_cli_ask_json_schema_from_the_local_model() -> None:
    binary = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"
    schema = {"type": "object", "required": ["count"],
              "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 10}}}
    result = subprocess.run([binary, "ask", "How many wheels does a bicycle have?",
                             "--json-schema", json.dumps(schema)],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ),
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"count": 2}
