"""Tiny randomly initialised transformers models, built offline from configs, for loading-path tests.

Each builder writes a complete model folder (weights, config, processor, tokenizer) of well
under a megabyte, so the real ``from_pretrained`` code runs in a test without any download.
The models generate gibberish; tests check plumbing (shapes, batching, decoding), not quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WORDS = ("a an the one two person people man woman child walks walking runs running stands standing rides riding "
         "car truck bicycle bag dog street road walkway lawn near on in of with and left right red blue white "
         "black describe this frame what is happening").split()

# A LLaVA-style template: "USER: <image> {text} ASSISTANT:" (the shape of llava-1.5's template).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }} : "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image> "
    "{% elif item['type'] == 'text' %}{{ item['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT : {% endif %}"
)


def build_tiny_blip(folder: Path, *, seed: int = 0) -> Path:
    """BLIP captioning model with a BERT word-piece tokenizer: a *plain* processor (no chat template)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {token: index for index, token in enumerate([*specials, *WORDS])}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]")
    layer: dict[str, Any] = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2}
    config = BlipConfig(
        text_config={**layer, "vocab_size": len(vocab), "max_position_embeddings": 64,
                     "bos_token_id": vocab["[DEC]"], "sep_token_id": vocab["[SEP]"],
                     "eos_token_id": vocab["[SEP]"], "pad_token_id": vocab["[PAD]"]},
        vision_config={**layer, "image_size": 32, "patch_size": 16},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava(folder: Path, *, seed: int = 0) -> Path:
    """LLaVA (CLIP vision tower + Llama decoder) with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    vocab = {token: index for index, token in enumerate([*specials, *WORDS, "USER", "ASSISTANT", ":"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>",
                                        extra_special_tokens={"image_token": "<image>"})
    # 16x16 images in 8x8 patches: 4 patch tokens + CLS, minus CLS ("default" strategy) = 4 image tokens.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    layer: dict[str, Any] = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**layer, image_size=16, patch_size=8, projection_dim=16),
        text_config=LlamaConfig(**layer, num_key_value_heads=1, vocab_size=len(vocab), max_position_embeddings=128,
                                bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"]),
        image_token_index=vocab["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = vocab["<pad>"]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_images(count: int, *, height: int = 24, width: int = 40, seed: int = 0) -> list[np.ndarray]:
    """``count`` random RGB uint8 images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
