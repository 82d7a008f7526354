"""Randomly initialised vision-language models of a chosen shape, built offline from configs.

The transformers captioner's real loading and generation code runs on these without any
download. Tests use the ``tiny`` shape (well under a megabyte); ``sleuth eval captioners
--random-vlm small`` builds a model the size of SmolVLM-256M to measure what such a model costs
on this hardware. The weights are random, so the captions are meaningless: only the compute
cost (and memory) is real.

Every shape is LLaVA-style: a CLIP vision tower, a two-layer projector and a Llama decoder,
with a word-level tokenizer padded to the shape's vocabulary size and a chat template
(``USER : <image> {text} ASSISTANT :``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleuth.errors import SleuthError

WORDS = ("a an the one two person people man woman child walks walking runs running stands standing rides riding "
         "car truck bicycle bag dog street road walkway lawn near on in of with and left right red blue white "
         "black describe this frame what is happening").split()
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")

# A LLaVA-style template: "USER: <image> {text} ASSISTANT:" (the shape of llava-1.5's template).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }} : "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image> "
    "{% elif item['type'] == 'text' %}{{ item['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT : {% endif %}"
)


class UnknownShapeError(SleuthError):
    """A random-model shape name that is not in :data:`SHAPES`."""


@dataclass(frozen=True, slots=True)
class VLMShape:
    """Sizes of a LLaVA-style model: CLIP vision tower, then a Llama decoder."""

    description: str
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vocab_size: int | None = None  # None: the tokenizer's few words alone
    max_positions: int = 128
    tie_embeddings: bool = False
    vision_feature_layer: int = -1

    @property
    def image_tokens(self) -> int:
        """Tokens one image takes in the decoder's input (the patches; the CLS token is dropped)."""
        return (self.image_size // self.patch_size) ** 2


SHAPES: dict[str, VLMShape] = {
    # The test model: 16x16 images in 8x8 patches (4 image tokens), one layer of width 16 on each side.
    "tiny": VLMShape("tiny test model (1 layer of width 16 per tower, 16 px images)", image_size=16, patch_size=8,
                     vision_hidden=16, vision_layers=1, vision_heads=2, vision_intermediate=32,
                     text_hidden=16, text_layers=1, text_heads=2, text_kv_heads=1, text_intermediate=32),
    # SmolVLM-256M's budget: a ViT-B/16 vision tower (86M) and a SmolLM2-135M-shaped decoder (tied embeddings).
    "small": VLMShape("CLIP ViT-B/16 at 224 px (196 image tokens) + SmolLM2-135M-shaped Llama decoder",
                      image_size=224, patch_size=16, vision_hidden=768, vision_layers=12, vision_heads=12,
                      vision_intermediate=3072, text_hidden=576, text_layers=30, text_heads=9, text_kv_heads=3,
                      text_intermediate=1536, vocab_size=49152, max_positions=2048, tie_embeddings=True,
                      vision_feature_layer=-2),
}


def shape_named(name: str) -> VLMShape:
    if name not in SHAPES:
        raise UnknownShapeError(f"unknown random VLM shape '{name}'", hint=f"choose from {', '.join(SHAPES)}")
    return SHAPES[name]


def _vocabulary(shape: VLMShape) -> dict[str, int]:
    tokens = [*SPECIALS, *WORDS, "USER", "ASSISTANT", ":"]
    if shape.vocab_size is not None:  # filler tokens, so the embedding and output layer have the real width
        tokens += [f"<w{index}>" for index in range(shape.vocab_size - len(tokens))]
    return {token: index for index, token in enumerate(tokens)}


def _config(shape: VLMShape, vocab: dict[str, int]) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
                              num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
                              image_size=shape.image_size, patch_size=shape.patch_size, projection_dim=16)
    text = LlamaConfig(hidden_size=shape.text_hidden, intermediate_size=shape.text_intermediate,
                       num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
                       num_key_value_heads=shape.text_kv_heads, vocab_size=len(vocab),
                       max_position_embeddings=shape.max_positions, tie_word_embeddings=shape.tie_embeddings,
                       bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"])
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                       image_seq_length=shape.image_tokens, vision_feature_layer=shape.vision_feature_layer,
                       vision_feature_select_strategy="default", tie_word_embeddings=shape.tie_embeddings)


def parameter_counts(shape: VLMShape) -> dict[str, int]:
    """Parameters of the vision tower, projector, decoder and in all, counted without allocating weights."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(_config(shape, _vocabulary(shape)))
    inner = model.model

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"vision": count(inner.vision_tower), "projector": count(inner.multi_modal_projector),
            "text": count(inner.language_model) + (0 if shape.tie_embeddings else count(model.lm_head)),
            "total": count(model)}


def build_random_llava(folder: Path, shape: VLMShape | str = "tiny", *, seed: int = 0,
                       min_new_tokens: int | None = None) -> Path:
    """Write a complete LLaVA model folder (weights, config, processor, tokenizer) of ``shape``.

    ``min_new_tokens`` goes into the saved generation config: with it equal to the captioner's
    ``max_new_tokens`` every caption has the same length, so a benchmark measures the shape's
    real cost instead of where random weights happen to emit the end token.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessorPil,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in benchmark output
    shape = shape_named(shape) if isinstance(shape, str) else shape
    vocab = _vocabulary(shape)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>",
                                        extra_special_tokens={"image_token": "<image>"})
    # Resize the short side to image_size, centre-crop a square; patches minus CLS ("default") are the image tokens.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": shape.image_size},
                                            crop_size={"height": shape.image_size, "width": shape.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=shape.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(_config(shape, vocab))
    model.generation_config.pad_token_id = vocab["<pad>"]
    if min_new_tokens is not None:
        model.generation_config.min_new_tokens = min_new_tokens
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
