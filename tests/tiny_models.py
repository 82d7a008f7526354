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


def _word_tokenizer(max_length: int) -> Any:
    """A word-level fast tokenizer over :data:`WORDS` that wraps each text in ``<s> ... </s>``.

    CLIP pools its text tower at the end token, so the tokenizer must add it, like the real one.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=max_length)


_TOWER: dict[str, Any] = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                          "num_attention_heads": 2}
_TEXT_LENGTH = 24
_TEXT_IDS = {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """CLIPModel (16 px images, 8-dimensional projection) with a word-level tokenizer and CLIP's processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = _word_tokenizer(_TEXT_LENGTH)
    config = CLIPConfig(text_config={**_TOWER, **_TEXT_IDS, "vocab_size": len(tokenizer),
                                     "max_position_embeddings": _TEXT_LENGTH},
                        vision_config={**_TOWER, "image_size": 16, "patch_size": 8}, projection_dim=8)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 16},
                                                                    crop_size={"height": 16, "width": 16}),
                              tokenizer=tokenizer)
    return _save(folder, model, processor)


def build_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    """SiglipModel (16 px images, 16-dimensional embeddings) with a word-level tokenizer and SigLIP's processor."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    tokenizer = _word_tokenizer(_TEXT_LENGTH)
    config = SiglipConfig(text_config={**_TOWER, **_TEXT_IDS, "vocab_size": len(tokenizer),
                                       "max_position_embeddings": _TEXT_LENGTH},
                          vision_config={**_TOWER, "image_size": 16, "patch_size": 8})
    torch.manual_seed(seed)
    model = SiglipModel(config)
    processor = SiglipProcessor(image_processor=SiglipImageProcessorPil(size={"height": 16, "width": 16}),
                                tokenizer=tokenizer)
    return _save(folder, model, processor)


def _save(folder: Path, model: Any, processor: Any) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_images(count: int, *, height: int = 24, width: int = 40, seed: int = 0) -> list[np.ndarray]:
    """``count`` random RGB uint8 images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
