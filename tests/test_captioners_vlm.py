"""VLM captioners: a tiny transformers model loaded from disk, a LiteLLM endpoint, and the factory."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sleuth.config import load_settings
from sleuth.errors import ConfigError, EndpointError, ModelFileError
from sleuth.llm.gateway import Gateway
from sleuth.tools.captioners import Captioner, build_captioner
from sleuth.tools.captioners.vlm_litellm import LiteLLMCaptioner
from sleuth.tools.captioners.vlm_transformers import TransformersCaptioner
from sleuth.tools.frames import Frame

from tests.conftest import ScriptedOpenAI, closed_port_url
from tests.tiny_models import build_tiny_blip, build_tiny_llava, random_images

# Six words: a caption that repeated the prompt would be longer than MAX_NEW_TOKENS words.
PROMPT = "describe this frame what is happening"
MAX_NEW_TOKENS = 3


def frames_from(images: list[np.ndarray]) -> list[Frame]:
    return [Frame(index * 5, index * 0.2, image) for index, image in enumerate(images)]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


# -- transformers ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("builder", "chat"), [("tiny_blip", False), ("tiny_llava", True)])
def test_transformers_captioner_batches_and_decodes_only_new_tokens(
        builder: str, chat: bool, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(builder)
    frames = frames_from(random_images(3))
    captioner = TransformersCaptioner(str(folder), prompt=PROMPT, batch_size=2,
                                      max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    assert isinstance(captioner, Captioner)
    assert captioner._model is None  # lazy: nothing loaded before the first call
    assert captioner.uses_chat_template is chat

    batch_sizes: list[int] = []
    model: Any = captioner._model
    generate = model.generate

    def counting_generate(**inputs: Any) -> Any:
        batch_sizes.append(int(inputs["pixel_values"].shape[0]))
        return generate(**inputs)

    model.generate = counting_generate
    captions = captioner.caption(frames)

    assert batch_sizes == [2, 1]
    assert len(captions) == 3 and all(isinstance(text, str) for text in captions)
    assert all(len(text.split()) <= MAX_NEW_TOKENS for text in captions), captions  # prompt not echoed
    # Batching changes neither the captions nor their order.
    one_by_one = TransformersCaptioner(str(folder), prompt=PROMPT, batch_size=1,
                                       max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    assert [one_by_one.caption([frame])[0] for frame in frames] == captions
    assert captioner.caption([]) == []


def test_missing_model_folder_is_one_line_with_a_hint(tmp_path: Path) -> None:
    captioner = TransformersCaptioner(str(tmp_path / "no-such-model"), prompt=PROMPT)
    with pytest.raises(ModelFileError) as caught:
        captioner.caption(frames_from(random_images(1)))
    message = str(caught.value)
    assert "no-such-model" in message and "save_pretrained" in message and "\n" not in message


@pytest.mark.slow
def test_uncached_hub_id_is_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    captioner = TransformersCaptioner("sleuth-tests/not-a-cached-model", prompt=PROMPT)
    with pytest.raises(ModelFileError) as caught:
        captioner.caption(frames_from(random_images(1)))
    message = str(caught.value)
    assert "huggingface-cli download sleuth-tests/not-a-cached-model" in message
    assert "tools.captioner.model" in message and "\n" not in message


# -- LiteLLM ---------------------------------------------------------------------------------


@pytest.fixture
def vlm_endpoint(scripted_openai: ScriptedOpenAI, monkeypatch: pytest.MonkeyPatch) -> ScriptedOpenAI:
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/scripted-vlm")
    monkeypatch.setenv("SLEUTH_VLM__API_BASE", scripted_openai.url)
    monkeypatch.setenv("SLEUTH_VLM__NUM_RETRIES", "0")
    return scripted_openai


def _image_level(url: str) -> int:
    """The grey level of a uniform test frame sent as a JPEG data URL, in steps of 60."""
    from PIL import Image

    header, payload = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
    return int(round(float(image.mean()) / 60))


def test_litellm_captioner_sends_one_image_per_request_and_keeps_order(vlm_endpoint: ScriptedOpenAI) -> None:
    def responder(body: dict[str, Any]) -> tuple[str, None]:
        (message,) = body["messages"]
        images = [part for part in message["content"] if part["type"] == "image_url"]
        assert len(images) == 1
        level = _image_level(images[0]["image_url"]["url"])
        time.sleep(0.05 * (4 - level))  # early frames answer last: order must not follow completion
        return f"frame at level {level}", None

    vlm_endpoint.responder = responder
    frames = frames_from([np.full((24, 32, 3), 60 * level, dtype=np.uint8) for level in range(5)])
    captioner = LiteLLMCaptioner(Gateway(load_settings()), prompt=PROMPT, max_tokens=20, concurrency=4)
    assert isinstance(captioner, Captioner) and captioner.name == "litellm:openai/scripted-vlm"

    captions = captioner.caption(frames)

    assert captions == [f"frame at level {level}" for level in range(5)]
    assert len(vlm_endpoint.requests) == 5
    for body in vlm_endpoint.requests:
        assert body["model"] == "scripted-vlm" and body["max_tokens"] == 20
        content = body["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": PROMPT}
        assert [part["type"] for part in content] == ["text", "image_url"]


def test_litellm_captioner_raises_the_gateway_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/nothing")
    monkeypatch.setenv("SLEUTH_VLM__API_BASE", closed_port_url())
    monkeypatch.setenv("SLEUTH_VLM__NUM_RETRIES", "0")
    captioner = LiteLLMCaptioner(Gateway(load_settings()), prompt=PROMPT, concurrency=2)
    with pytest.raises(EndpointError):
        captioner.caption(frames_from(random_images(3)))


# -- factory ---------------------------------------------------------------------------------


def test_build_captioner_needs_a_model_for_the_vlm_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__KIND", "transformers")
    with pytest.raises(ConfigError, match="tools.captioner.model"):
        build_captioner(load_settings())
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__KIND", "litellm")
    with pytest.raises(ConfigError, match="vlm.model"):
        build_captioner(load_settings())


def test_build_captioner_passes_the_configuration_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__KIND", "transformers")
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__BATCH_SIZE", "3")
    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__PROMPT", "what happens?")
    captioner = build_captioner(load_settings())
    assert isinstance(captioner, TransformersCaptioner)
    assert (captioner.model_id, captioner.batch_size, captioner.prompt) == (str(tmp_path / "model"), 3, "what happens?")

    monkeypatch.setenv("SLEUTH_TOOLS__CAPTIONER__KIND", "litellm")
    monkeypatch.setenv("SLEUTH_VLM__MODEL", "openai/some-vlm")
    captioner = build_captioner(load_settings())
    assert isinstance(captioner, LiteLLMCaptioner) and captioner.prompt == "what happens?"


def test_build_captioner_defaults_to_the_structured_describer() -> None:
    structured = pytest.importorskip("sleuth.tools.captioners.structured")
    assert isinstance(build_captioner(load_settings()), structured.StructuredDescriber)
