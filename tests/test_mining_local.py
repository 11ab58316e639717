"""Local mining backend, prompts and structured-output parsing.

Tiny random models built from config (a Llama with a byte-level BPE tokenizer and a chat template; a LLaVA with a
CLIP vision tower) prove the pipeline: batching, grammar-constrained JSON, "length" reports, shared-prefix reuse,
log-likelihoods, captions. One test runs the real SmolLM2-135M-Instruct (offline GGUF copy).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import (
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.mining.backends import GenerationRequest, GenerationResult
from deepinterestgr.mining.local import LocalBackend
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES, PromptTemplates
from deepinterestgr.mining.schema import (
    MAX_DESCRIPTORS,
    Descriptors,
    JudgeLabel,
    ReasonedDescriptors,
    UserInterests,
    json_schema,
    normalize_descriptor,
    parse_caption,
    parse_descriptors,
    parse_interests,
    parse_label,
)
from deepinterestgr.offline_models import SMOLLM2_INSTALL, smollm2_gguf
from tests.tiny_chat import tiny_chat_lm, tiny_chat_tokenizer, tiny_llava

torch.set_num_threads(1)

ITEMS = [
    {"item_id": "a", "brand": "Alba Botanica", "categories": ["Skin Care", "Face", "Toners & Astringents"]},
    {"item_id": "b", "brand": None, "categories": ["Hair Care", "Styling Products"]},
    {"item_id": "c", "title": "Rose lip balm", "description": "A tinted balm.", "categories": ["Makeup", "Lips"]},
    {"item_id": "d", "brand": "OPI", "categories": ["Makeup", "Nails", "Nail Polish"]},
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_chat_tokenizer()


@pytest.fixture(scope="module")
def tiny_lm(tokenizer) -> LlamaForCausalLM:
    return tiny_chat_lm(tokenizer)


def _backend(lm, tokenizer, **options) -> LocalBackend:
    return LocalBackend.from_model(lm, tokenizer, model_id="tiny-llama", **options)


def _longer(request: GenerationRequest, tokens: int) -> GenerationRequest:
    return dataclasses.replace(request, max_new_tokens=tokens)


# ----- local backend: generation -----
def test_batched_generation_yields_every_index_once(tiny_lm, tokenizer):
    requests = [DEFAULT_TEMPLATES.descriptors_request(item) for item in ITEMS]
    requests += [DEFAULT_TEMPLATES.judge_request(ITEMS[0], "gentle toner"), DEFAULT_TEMPLATES.interests_request(ITEMS)]
    requests += [GenerationRequest(messages=({"role": "user", "content": "hello"},), max_new_tokens=4)]
    backend = _backend(tiny_lm, tokenizer, batch_size=3)
    indices = [index for index, result in backend.generate(requests) if isinstance(result, GenerationResult)]
    assert sorted(indices) == list(range(len(requests)))
    assert backend.name == "local" and backend.model == "tiny-llama"


# Longest answers the schemas allow (a descriptor is at most 60 characters, one token each in the worst case):
# with this budget a constrained answer can only end by completing the JSON, whatever the model.
WORST_CASE_TOKENS = 1300


def test_schema_constrained_answers_parse_even_from_a_random_model(tiny_lm, tokenizer):
    templates = DEFAULT_TEMPLATES
    cases = [(templates.descriptors_request(item), Descriptors) for item in ITEMS]
    cases += [(templates.descriptors_request(ITEMS[0], reasoning=True), ReasonedDescriptors)]
    cases += [(templates.interests_request(ITEMS), UserInterests), (templates.judge_request(ITEMS[2], "x"), JudgeLabel)]
    requests = [_longer(request, WORST_CASE_TOKENS) for request, _ in cases]

    constrained = dict(_backend(tiny_lm, tokenizer, batch_size=4).generate(requests))
    for index, (_, model) in enumerate(cases):
        assert constrained[index].finish_reason == "stop"
        model.model_validate_json(constrained[index].text)  # raises if not schema-valid

    # the same random model without the grammar does not write valid JSON: the test above depends on the grammar
    free = dict(_backend(tiny_lm, tokenizer, batch_size=4, constrain=False).generate(requests[:4]))
    assert all(not parse_descriptors(free[i]).ok for i in range(4))


def test_length_is_reported_when_max_new_tokens_cuts_the_answer(tiny_lm, tokenizer):
    request = DEFAULT_TEMPLATES.descriptors_request(ITEMS[0])
    short, long = _longer(request, 3), _longer(request, WORST_CASE_TOKENS)
    results = dict(_backend(tiny_lm, tokenizer, batch_size=2).generate([short, long]))
    assert results[0].finish_reason == "length"
    assert results[0].text == results[1].text[: len(results[0].text)]  # same greedy answer, cut off
    assert len(tokenizer(results[0].text, add_special_tokens=False)["input_ids"]) <= 3
    assert results[1].finish_reason == "stop"
    parsed = parse_descriptors(results[0])
    assert parsed.failure.startswith("cut off at the token limit") and parsed.raw == results[0].text


def test_shared_prefix_reuse_gives_the_same_answers(tiny_lm, tokenizer):
    requests = [DEFAULT_TEMPLATES.descriptors_request(item) for item in ITEMS]
    requests += [_longer(DEFAULT_TEMPLATES.descriptors_request(ITEMS[1], reasoning=True), 40)]
    reuse = _backend(tiny_lm, tokenizer, batch_size=3, constrain=False, min_prefix_tokens=8)
    plain = _backend(tiny_lm, tokenizer, batch_size=3, constrain=False, reuse_prefix=False)
    assert dict(reuse.generate(requests)) == dict(plain.generate(requests))
    assert reuse.prefix_tokens_reused > 3 * 100  # instructions + few-shot turns, read once for the four items
    assert plain.prefix_tokens_reused == 0


def test_loglikelihood_matches_a_manual_computation(tiny_lm, tokenizer):
    pairs = [("Brand: OPI", " nail polish"), ("Categories: Skin Care > Face > Toners", " gentle toner"), ("a", "b")]
    backend = _backend(tiny_lm, tokenizer, batch_size=2)  # two batches, one padded

    def manual(context: str, continuation: str) -> float:
        ctx = tokenizer(context)["input_ids"]
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(tiny_lm(ids).logits[0].float(), dim=-1)
        return sum(logprobs[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))

    assert backend.loglikelihood(pairs) == pytest.approx([manual(c, x) for c, x in pairs], abs=1e-4)
    chat = backend.loglikelihood(pairs[:1], chat=True)
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": pairs[0][0]}], tokenize=False, add_generation_prompt=True
    )
    assert chat == pytest.approx([manual(templated, pairs[0][1])], abs=1e-4)
    with pytest.raises(ValueError, match="pair 0: the continuation has no tokens"):
        backend.loglikelihood([("context", "")])


def test_text_backend_refuses_images_and_models_without_chat_template(tiny_lm, tokenizer):
    request = dataclasses.replace(DEFAULT_TEMPLATES.descriptors_request(ITEMS[0]), images=("photo.png",))
    with pytest.raises(ConfigError, match=r"requests \[0\] attach images but 'tiny-llama' is a text-only model"):
        list(_backend(tiny_lm, tokenizer).generate([request]))
    bare = tiny_chat_tokenizer()
    bare.chat_template = None
    with pytest.raises(ConfigError, match="has no chat template"):
        _backend(tiny_lm, bare)


def _sample_image() -> Path:
    """A photo shipped by gradio (a dependency of this package)."""
    folder = Path(importlib.util.find_spec("gradio").submodule_search_locations[0])
    return folder / "media_assets" / "images" / "bus.png"


def test_caption_from_a_tiny_image_text_model(tmp_path):
    model, processor = tiny_llava()
    backend = LocalBackend.from_model(model, processor, model_id="tiny-llava")
    assert backend.vision
    image = _sample_image()
    items = [
        {"item_id": "bus", "title": "Toy bus", "image": str(image)},
        {"item_id": "gone", "brand": "X", "image": str(tmp_path / "missing.png")},
    ]
    requests = [_longer(DEFAULT_TEMPLATES.caption_request(item), 12) for item in items]
    assert requests[0].images == (str(image),)
    results = dict(backend.generate(requests))
    assert results[0].finish_reason in ("stop", "length") and isinstance(results[0].text, str)
    assert results[1].finish_reason == "error" and "missing.png" in results[1].error
    assert parse_caption(results[1]).failure.startswith("backend error: cannot open image of request 1")


@pytest.mark.skipif(smollm2_gguf() is None, reason=f"SmolLM2 offline copy not installed: {SMOLLM2_INSTALL}")
def test_smollm2_writes_schema_valid_descriptors_for_sample_items():
    from deepinterestgr.data import load_sample

    items, seen = [], set()
    for item in load_sample().items:  # three items with different texts
        text = DEFAULT_TEMPLATES.item_text(item)
        if text not in seen:
            seen.add(text)
            items.append(item)
        if len(items) == 3:
            break
    backend = LocalBackend(batch_size=3)
    assert backend.model.startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    results = dict(backend.generate([DEFAULT_TEMPLATES.descriptors_request(item) for item in items]))
    assert sorted(results) == [0, 1, 2]
    for result in results.values():
        assert result.finish_reason == "stop"
        Descriptors.model_validate_json(result.text)
        parsed = parse_descriptors(result, examples=DEFAULT_TEMPLATES.example_descriptors())
        assert parsed.failure is None or parsed.failure.startswith("no descriptor left"), parsed
        assert all(d == normalize_descriptor(d) for d in parsed.descriptors)


# ----- structured output parsing -----
def _answer(*descriptors: tuple[str, float]) -> str:
    return json.dumps({"descriptors": [{"descriptor": d, "confidence": c} for d, c in descriptors]})


def test_parse_descriptors_normalizes_and_keeps_order():
    parsed = parse_descriptors(_answer(("  Gentle  TONER for oily skin. ", 0.9), ("“travel size”", 0.4)))
    assert parsed.ok and parsed.failure is None
    assert parsed.descriptors == ["gentle toner for oily skin", "travel size"]
    assert parsed.confidences == [0.9, 0.4]
    assert parsed.dropped == []


def test_parse_descriptors_malformed_json_is_a_failure_with_the_raw_text():
    raw = '{"descriptors": [{"descriptor": "toner", "confidence": 0.9}'
    parsed = parse_descriptors(raw)
    assert parsed.failure == "malformed JSON (Expecting ',' delimiter at line 1 column 60)"
    assert (parsed.descriptors, parsed.confidences, parsed.raw) == ([], [], raw)


@pytest.mark.parametrize("raw", ["", "   \n", GenerationResult("", "stop")])
def test_parse_descriptors_empty_answer_is_a_failure(raw):
    parsed = parse_descriptors(raw)
    assert parsed.failure == "empty answer" and parsed.descriptors == []


def test_parse_descriptors_empty_list_is_a_failure():
    parsed = parse_descriptors('{"descriptors": []}')
    assert parsed.failure.startswith("does not match the Descriptors schema: descriptors: List should have at least 1")


@pytest.mark.parametrize("confidence", [1.5, -0.1])
def test_parse_descriptors_confidence_outside_unit_interval_is_a_failure(confidence):
    parsed = parse_descriptors(_answer(("toner", 0.8), ("cheap", confidence)))
    assert parsed.failure.startswith("does not match the Descriptors schema: descriptors.1.confidence: Input should be")
    assert f"(got {confidence})" in parsed.failure
    assert parsed.descriptors == []


def test_parse_descriptors_drops_copies_of_the_prompt_examples():
    examples = DEFAULT_TEMPLATES.example_descriptors()
    parsed = parse_descriptors(_answer(("Keeps drinks cold on long hikes.", 0.9), ("toner", 0.5)), examples=examples)
    assert parsed.descriptors == ["toner"] and parsed.confidences == [0.5]
    assert parsed.dropped == [("Keeps drinks cold on long hikes.", "copy of a prompt example")]
    only_copies = parse_descriptors(_answer(("saves space on a small desk", 0.6)), examples=examples)
    assert only_copies.failure.startswith("no descriptor left after normalization")
    assert only_copies.descriptors == [] and "copy of a prompt example" in only_copies.failure


def test_parse_descriptors_drops_duplicates_keeping_the_first():
    parsed = parse_descriptors(_answer(("Gift idea", 0.7), ("gift  idea", 0.9), ("GIFT IDEA!", 0.1), ("toner", 0.2)))
    assert parsed.descriptors == ["gift idea", "toner"] and parsed.confidences == [0.7, 0.2]
    assert parsed.dropped == [("gift  idea", "duplicate"), ("GIFT IDEA!", "duplicate")]


def test_parse_descriptors_drops_empty_punctuation_overlong_and_surplus():
    many = [(f"use {k}", 0.5) for k in range(MAX_DESCRIPTORS + 1)]
    parsed = parse_descriptors(_answer(("", 0.5), ("?!", 0.5), ("x" * 61, 0.5), *many))
    assert parsed.descriptors == [f"use {k}" for k in range(MAX_DESCRIPTORS)]
    assert [why for _, why in parsed.dropped] == [
        "empty or punctuation only",
        "empty or punctuation only",
        "longer than 60 characters",
        f"beyond the first {MAX_DESCRIPTORS} descriptors",
    ]


def test_parse_descriptors_cut_off_and_backend_errors_are_failures():
    cut = parse_descriptors(GenerationResult('{"descriptors": [{"descriptor": "ton', "length"))
    assert cut.failure == "cut off at the token limit (finish_reason 'length'): raise max_new_tokens"
    assert cut.raw == '{"descriptors": [{"descriptor": "ton'
    # a complete-looking answer that hit the limit is still a failure: more may have followed
    assert not parse_descriptors(GenerationResult(_answer(("toner", 0.9)), "length")).ok
    error = parse_descriptors(GenerationResult("", "error", "HTTP 503"))
    assert error.failure == "backend error: HTTP 503"


def test_parse_descriptors_strictness_fences_and_reasoning():
    extra = parse_descriptors('{"descriptors": [{"descriptor": "toner", "confidence": 0.9, "why": "x"}]}')
    assert extra.failure.startswith("does not match the Descriptors schema: descriptors.0.why: Extra inputs")
    fenced = parse_descriptors("```json\n" + _answer(("toner", 0.9)) + "\n```")
    assert fenced.descriptors == ["toner"]
    reasoned = json.dumps(
        {"reasoning": "A toner for oily skin.", "descriptors": [{"descriptor": "x", "confidence": 1}]}
    )
    parsed = parse_descriptors(reasoned, reasoning=True)
    assert parsed.reasoning == "A toner for oily skin." and parsed.descriptors == ["x"] and parsed.confidences == [1.0]
    assert parse_descriptors(reasoned).failure.startswith("does not match the Descriptors schema: reasoning: Extra")


def test_parse_label_interests_and_caption():
    assert parse_label('{"label": 1}').label == 1
    assert parse_label('{"label": 0}').label == 0
    bad = parse_label('{"label": 2}')
    assert bad.label is None and bad.failure.startswith("does not match the JudgeLabel schema: label: Input should be")
    interests = parse_interests('{"interests": ["Nail art", "nail art", "clean beauty"]}')
    assert interests.interests == ["nail art", "clean beauty"] and interests.ok
    assert parse_caption(GenerationResult("  A red\n bus toy. ", "stop")).caption == "A red bus toy."
    assert parse_caption(GenerationResult("A red", "length")).failure.startswith("cut off")


def test_json_schemas_bound_what_constrained_decoding_may_write():
    schema = json_schema(Descriptors)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["descriptors"]["minItems"] == 1
    assert schema["properties"]["descriptors"]["maxItems"] == MAX_DESCRIPTORS
    descriptor = schema["$defs"]["Descriptor"]["properties"]
    assert descriptor["confidence"] == {"maximum": 1.0, "minimum": 0.0, "title": "Confidence", "type": "number"}
    assert (descriptor["descriptor"]["minLength"], descriptor["descriptor"]["maxLength"]) == (1, 60)
    assert list(json_schema(ReasonedDescriptors)["properties"]) == ["reasoning", "descriptors"]  # reasoning first
    assert json_schema(JudgeLabel)["properties"]["label"]["enum"] == [0, 1]


# ----- prompts -----
def test_item_text_shows_only_known_fields_and_cuts_descriptions():
    templates = PromptTemplates(max_description_chars=20)
    item = {"title": "Rose  lip balm", "brand": "", "categories": ["Makeup", " Lips "], "description": "word " * 20}
    assert templates.item_text(item) == (
        "Title: Rose lip balm\nCategories: Makeup > Lips\nDescription: word word word word ..."
    )
    assert templates.item_text({**item, "caption": "A pink tube."}).endswith("\nPhoto: A pink tube.")


def test_descriptor_requests_share_their_long_part_and_end_with_the_item():
    first, second = (DEFAULT_TEMPLATES.descriptors_request(item) for item in ITEMS[:2])
    assert first.messages[:-1] == second.messages[:-1]
    assert [m["role"] for m in first.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert first.messages[-1]["content"] == "Brand: Alba Botanica\nCategories: Skin Care > Face > Toners & Astringents"
    assert first.json_schema == json_schema(Descriptors)
    for message in first.messages[2:5:2]:  # the examples' answers are valid answers
        Descriptors.model_validate_json(message["content"])
    reasoned = DEFAULT_TEMPLATES.descriptors_request(ITEMS[0], reasoning=True)
    assert reasoned.json_schema == json_schema(ReasonedDescriptors)
    assert reasoned.messages[2]["content"].startswith('{"reasoning": ')
    ReasonedDescriptors.model_validate_json(reasoned.messages[2]["content"])


def test_interest_judge_and_caption_requests():
    history = [{"brand": f"B{k}", "categories": ["Makeup"]} for k in range(12)]
    interests = DEFAULT_TEMPLATES.interests_request(history)
    lines = interests.messages[-1]["content"].splitlines()
    assert lines[0] == "1. Brand: B2; Categories: Makeup" and len(lines) == 10
    judge = DEFAULT_TEMPLATES.judge_request(ITEMS[3], "chip-resistant nail color")
    assert judge.messages[-1]["content"].endswith(
        "Categories: Makeup > Nails > Nail Polish\nDescriptor: chip-resistant nail color"
    )
    assert judge.json_schema == json_schema(JudgeLabel)
    with pytest.raises(DataError, match="item 'a': field 'image' is empty"):
        DEFAULT_TEMPLATES.caption_request(ITEMS[0])
    with pytest.raises(DataError, match="item 'z' has no title, brand, categories"):
        DEFAULT_TEMPLATES.descriptors_request({"item_id": "z", "categories": []})


def test_templates_are_overridable_and_checked():
    custom = dataclasses.replace(DEFAULT_TEMPLATES, item_user="Product:\n{item}")
    assert custom.descriptors_request(ITEMS[0]).messages[-1]["content"].startswith("Product:\nBrand: Alba Botanica")
    with pytest.raises(ConfigError, match=r"PromptTemplates.judge_user: unknown placeholder\(s\) \['label'\]"):
        PromptTemplates(judge_user="{item} {descriptor} {label}")
    with pytest.raises(ConfigError, match=r"PromptTemplates\.judge_max_new_tokens must be >= 1, got 0"):
        PromptTemplates(judge_max_new_tokens=0)
