"""Captions from a Hugging Face vision-language model, run in this process (or in a Ray Serve replica).

Any model that ``AutoModelForImageTextToText`` loads works: SmolVLM, Qwen2-VL/2.5-VL, LLaVA,
Idefics, PaliGemma, BLIP, ... by local folder or hub id. Processors with a chat template get the
frame and the prompt as one user message; plain ones (BLIP) get ``processor(images=, text=)``.
Generation is greedy and batched; only the newly generated tokens are decoded.

Nothing is downloaded unless ``allow_download=True``: the model must be a local folder or
already in the Hugging Face cache. On CUDA (the default when present) the model runs in bf16
(fp16 where bf16 is unsupported); on CPU in float32.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sleuth import telemetry
from sleuth.errors import ModelFileError
from sleuth.tools.frames import Frame


class TransformersCaptioner:
    """Batched greedy captioning with a transformers VLM, loaded lazily on the first call."""

    independent_frames = True  # each frame is captioned alone: a Ray replica may batch frames across calls

    def __init__(self, model: str, *, prompt: str, batch_size: int = 8, max_new_tokens: int = 64,
                 device: str | None = None, allow_download: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_id = model
        self.prompt = prompt
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.requested_device = device
        self.allow_download = allow_download
        self.name = f"transformers:{model}"
        self._model: Any = None
        self._processor: Any = None
        self._device: Any = None
        self._dtype: Any = None
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------

    def _looks_like_path(self) -> bool:
        text = self.model_id
        return text.startswith((".", "/", "~")) or "\\" in text or Path(text).expanduser().exists() \
            or text.count("/") > 1

    def load(self) -> None:
        """Load processor and weights now (otherwise on first use); a Ray replica calls this at start."""
        self._load()

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output
            hf_logging.set_verbosity_error()

            source = self.model_id
            if self._looks_like_path():
                folder = Path(source).expanduser()
                if not (folder / "config.json").is_file():
                    raise ModelFileError(f"captioner model folder not found or incomplete: {folder}",
                                         hint="point tools.captioner.model at a folder saved with save_pretrained "
                                         "(it holds config.json and the weights)")
                source = str(folder)
            device = torch.device(self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu"))
            if device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
            options = {"local_files_only": not self.allow_download}
            try:
                processor: Any = AutoProcessor.from_pretrained(source, **options)
                model: Any = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **options)
            except OSError as exc:
                raise ModelFileError(
                    f"cannot load captioner model '{self.model_id}': {_first_line(exc)}",
                    hint=f"download it once with `huggingface-cli download {self.model_id} --local-dir <folder>` "
                    "and set tools.captioner.model to the folder") from None
            except (ValueError, KeyError) as exc:
                raise ModelFileError(
                    f"'{self.model_id}' is not a vision-language model transformers can load: {_first_line(exc)}",
                    hint="use a model that AutoModelForImageTextToText supports (SmolVLM, Qwen2-VL, LLaVA, BLIP, ...)",
                ) from None
            model.to(device).eval()
            tokenizer = getattr(processor, "tokenizer", None)
            if tokenizer is not None and not model.config.is_encoder_decoder:
                tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
            generation = getattr(model, "generation_config", None)
            if generation is not None and generation.pad_token_id is None and tokenizer is not None:
                generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
                    else tokenizer.eos_token_id
            self._processor, self._device, self._dtype = processor, device, dtype
            self._model = model

    @property
    def uses_chat_template(self) -> bool:
        self._load()
        return bool(getattr(self._processor, "chat_template", None))

    # -- captioning --------------------------------------------------------------------------

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        with telemetry.tool_span("caption") as span:
            span.set_attribute("sleuth.captioner", self.name)
            span.set_attribute("sleuth.batch.size", len(frames))
            if not frames:
                return []
            self._load()
            return self._answers([frame.image for frame in frames], self.prompt)

    def ask(self, images: Sequence[Any], prompt: str) -> list[str]:
        """The model's answer to ``prompt`` about each RGB image (cloze completion uses it)."""
        with telemetry.tool_span("vlm_ask") as span:
            span.set_attribute("sleuth.captioner", self.name)
            span.set_attribute("sleuth.batch.size", len(images))
            if not images:
                return []
            self._load()
            return self._answers(list(images), prompt)

    def _answers(self, images: list[Any], prompt: str) -> list[str]:
        answers: list[str] = []
        for start in range(0, len(images), self.batch_size):
            answers.extend(self._generate(images[start:start + self.batch_size], prompt))
        return answers

    def _inputs(self, images: list[Any], prompt: str) -> Any:
        processor = self._processor
        if getattr(processor, "chat_template", None):
            conversations = [[{"role": "user", "content": [{"type": "image", "image": image},
                                                           {"type": "text", "text": prompt}]}]
                             for image in images]
            return processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True, return_tensors="pt",
                                                 processor_kwargs={"padding": True})
        if prompt:
            return processor(images=images, text=[prompt] * len(images), padding=True, return_tensors="pt")
        return processor(images=images, return_tensors="pt")

    def _generate(self, arrays: Sequence[Any], prompt: str) -> list[str]:
        import torch
        from PIL import Image

        images = [Image.fromarray(array) for array in arrays]
        inputs = _to_device(self._inputs(images, prompt), self._device, self._dtype)
        prompt_ids = inputs.get("input_ids")
        with torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if prompt_ids is not None and not self._model.config.is_encoder_decoder:
            output = output[:, _prompt_length(output, prompt_ids):]
        texts = self._processor.batch_decode(output, skip_special_tokens=True)
        return [text.strip() for text in texts]


def _to_device(inputs: Any, device: Any, dtype: Any) -> dict[str, Any]:
    """Tensors to ``device``; floating ones (pixel values) also to the model's dtype."""
    import torch

    moved: dict[str, Any] = {}
    for key, value in dict(inputs).items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved


def _prompt_length(output: Any, prompt_ids: Any) -> int:
    """How many leading output tokens repeat the prompt.

    Decoder-only models return prompt + continuation. BLIP-style captioners return the prompt with
    its first token replaced by a BOS and its final separator dropped, so the comparison skips
    column 0 and stops at the first column where any row differs.
    """
    width = min(output.shape[1], prompt_ids.shape[1])
    if width <= 1:
        return 0
    same = (output[:, 1:width] == prompt_ids[:, 1:width].to(output.device)).all(dim=0)
    differing = (~same).nonzero()
    return width if len(differing) == 0 else 1 + int(differing[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
