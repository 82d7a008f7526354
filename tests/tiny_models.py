"""Tiny randomly initialised transformers models, built offline from configs, for loading-path tests.

Each builder writes a complete model folder (weights, config, processor, tokenizer) of well
under a megabyte, so the real ``from_pretrained`` code runs in a test without any download.
The models generate gibberish; tests check plumbing (shapes, batching, decoding), not quality.
The LLaVA builder lives in :mod:`sleuth.evals.random_vlm`, where the captioner benchmark builds
larger shapes with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sleuth.evals.random_vlm import WORDS, build_random_llava


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
    return build_random_llava(folder, "tiny", seed=seed)


def random_images(count: int, *, height: int = 24, width: int = 40, seed: int = 0) -> list[np.ndarray]:
    """``count`` random RGB uint8 images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
