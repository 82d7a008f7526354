"""The AnomalyLMM agents: cloze generation, completion, comparison, ranking and fusion.

The LLM is a scripted endpoint (control flow only); the local-VLM path runs a tiny random LLaVA.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sleuth.agents.cloze import (
    UNKNOWN,
    Cloze,
    Completion,
    compare,
    complete_cloze,
    fuse,
    generate_cloze,
    lexicon_cloze,
    parse_fills,
    rank_positions,
)
from sleuth.config import load_settings
from sleuth.llm.gateway import Gateway

from tests.conftest import ScriptedOpenAI


def _slots(cloze: Cloze) -> list[tuple[str, str]]:
    return [(slot.name, slot.answer) for slot in cloze.slots]


def test_lexicon_cloze_masks_verbs_and_colours_but_keeps_auxiliaries() -> None:
    cloze = lexicon_cloze("A man in a red jacket is running and carries a grey bag")
    assert cloze.text == "A man in a <COLOR>_1 jacket is <VERB>_1 and <VERB>_2 a <COLOR>_2 bag"
    assert _slots(cloze) == [("COLOR_1", "red"), ("VERB_1", "running"), ("VERB_2", "carries"), ("COLOR_2", "grey")]
    assert lexicon_cloze("someone near the building at night").slots == []  # -ing nouns are not verbs


def test_generated_cloze_is_rebuilt_from_the_query_not_from_the_model_text(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = [json.dumps({
        "text": "A woman <VERB>_1 quickly",  # rewritten: ignored
        "slots": [{"name": "VERB_1", "kind": "VERB", "answer": "is"},  # an auxiliary: unmasked
                  {"name": "VERB_2", "kind": "VERB", "answer": "sprinting"},
                  {"name": "COLOR_1", "kind": "COLOR", "answer": "purple"}]})]  # not in the query: dropped
    cloze = generate_cloze("a woman is sprinting past a blue car", gateway=Gateway(load_settings()))
    assert cloze.text == "a woman is <VERB>_1 past a <COLOR>_1 car"
    assert _slots(cloze) == [("VERB_1", "sprinting"), ("COLOR_1", "blue")]
    assert cloze.source == "llm+lexicon"  # the lexicon added "blue" and removed "is"


def test_broken_model_answers_fall_back_to_the_lexicon(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ["not json at all"]
    cloze = generate_cloze("a man running to the left", gateway=Gateway(load_settings()))
    assert cloze.source == "lexicon" and _slots(cloze) == [("VERB_1", "running")]
    assert len(scripted_openai.requests) == 2  # the gateway retried once with the validation error


CLOZE = Cloze(query="a person in white walking left", text="a person in <COLOR>_1 <VERB>_1 left",
              slots=[{"name": "COLOR_1", "kind": "COLOR", "answer": "white"},
                     {"name": "VERB_1", "kind": "VERB", "answer": "walking"}])


def test_completion_from_a_description_is_one_word_per_slot(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = [json.dumps({"COLOR_1": "Light grey", "VERB_1": "unknown"})]
    completion = complete_cloze(CLOZE, "item-1", gateway=Gateway(load_settings()),
                                description="A person at the left is standing still, light grey.")
    assert completion.fills == {"COLOR_1": "light", "VERB_1": UNKNOWN}
    assert completion.source == "description" and completion.error is None
    prompt = scripted_openai.requests[0]["messages"][-1]["content"]
    assert "standing still, light grey" in prompt and "<COLOR>_1" in prompt


def test_an_invalid_completion_leaves_every_slot_unknown_and_says_why(scripted_openai: ScriptedOpenAI) -> None:
    scripted_openai.replies = ['{"COLOR_1": "white"}']  # VERB_1 missing, twice
    completion = complete_cloze(CLOZE, "item-1", gateway=Gateway(load_settings()), description="A person.")
    assert completion.fills == {"COLOR_1": UNKNOWN, "VERB_1": UNKNOWN}
    assert completion.error and "VERB_1" in completion.error


def test_compare_decides_obvious_pairs_in_code_and_asks_once_for_the_rest(scripted_openai: ScriptedOpenAI) -> None:
    completions = [Completion(item_id="a", fills={"COLOR_1": "white", "VERB_1": "walks"}),
                   Completion(item_id="b", fills={"COLOR_1": "gray", "VERB_1": "strolling"}),
                   Completion(item_id="c", fills={"COLOR_1": "light", "VERB_1": UNKNOWN}),
                   Completion(item_id="d", fills={"COLOR_1": "beige", "VERB_1": "strolling"})]
    scripted_openai.replies = [json.dumps({"equivalent": [True]})]
    compared = {c.item_id: c.matches for c in compare(CLOZE, completions, gateway=Gateway(load_settings()))}
    assert compared == {"a": {"COLOR_1": True, "VERB_1": True}, "b": {"COLOR_1": False, "VERB_1": True},
                        "c": {"COLOR_1": True, "VERB_1": False}, "d": {"COLOR_1": False, "VERB_1": True}}
    assert len(scripted_openai.requests) == 1  # only walking/strolling reached the model, once
    assert "'walking' vs 'strolling'" in scripted_openai.requests[0]["messages"][-1]["content"]


def test_ranks_share_ties_and_fusion_follows_the_paper() -> None:
    assert rank_positions({"a": 2, "b": 0, "c": 2, "d": 1}) == {"a": 0, "c": 0, "d": 1, "b": 2}
    assert fuse(0.6, 0, a1=1.0, a2=0.075, beta=0.5) == pytest.approx(0.675)
    assert fuse(0.6, 2, a1=1.0, a2=0.075, beta=0.5) == pytest.approx(0.6 + 0.075 * 0.25)
    assert fuse(0.6, None, a1=1.0, a2=0.075, beta=0.5) == pytest.approx(0.6)


def test_free_text_fills_are_parsed_and_gibberish_is_unknown() -> None:
    assert parse_fills("VERB_1 = Walking; <COLOR>_1: white.", CLOZE) == {"COLOR_1": "white", "VERB_1": "walking"}
    assert parse_fills("the the person bicycle", CLOZE) == {"COLOR_1": UNKNOWN, "VERB_1": UNKNOWN}


def test_a_local_transformers_vlm_completes_from_the_crop(tmp_path: Path) -> None:
    """The real loading and generation code on a tiny random LLaVA: its words are meaningless, so
    this checks the plumbing (one answer per slot, from the image, no LLM call)."""
    from sleuth.tools.captioners.vlm_transformers import TransformersCaptioner

    from tests.tiny_models import build_tiny_llava

    vlm = TransformersCaptioner(str(build_tiny_llava(tmp_path / "llava")), prompt="", max_new_tokens=8)
    crop = np.random.default_rng(0).integers(0, 256, (40, 24, 3), dtype=np.uint8)

    class NoLLM:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("the local VLM path must not call the LLM")

    completion = complete_cloze(CLOZE, "item-1", gateway=NoLLM(), local_vlm=vlm, crop=crop)  # type: ignore[arg-type]
    assert completion.source == "local-vlm"
    assert set(completion.fills) == {"COLOR_1", "VERB_1"}
    assert all(word == UNKNOWN or word.isalpha() for word in completion.fills.values())
