"""The shared-prompt KV path of beam search gives what the standard cache gives, on other attention layouts too."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from deepinterestgr.recommender.beam_search import sid_beam_search
from deepinterestgr.recommender.constrained import SIDTrie
from deepinterestgr.recommender.shared_prefix import supports_shared_prefix
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_only_tokenizer, sid_paths
from deepinterestgr.sid import SemanticIDMap

SIZES = {"vocab_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}


def build(kind: str):
    torch.manual_seed(0)
    if kind == "llama-gqa":  # 4 query heads share 2 key/value heads
        return LlamaForCausalLM(LlamaConfig(**SIZES, num_attention_heads=4, num_key_value_heads=2))
    if kind == "qwen3":  # q/k norms, explicit head_dim
        return Qwen3ForCausalLM(Qwen3Config(**SIZES, num_attention_heads=4, num_key_value_heads=1, head_dim=16))
    raise ValueError(kind)


@pytest.fixture(params=["llama-gqa", "qwen3"])
def setup(request):
    codes = np.random.default_rng(1).integers(0, 5, size=(60, 3))
    sid_map = SemanticIDMap.from_codes([f"i{n}" for n in range(60)], codes, codebook_size=5)
    tokenizer = sid_only_tokenizer()
    model = build(request.param).eval()
    add_sid_tokens(model, tokenizer, sid_map)
    trie = SIDTrie(sid_paths(sid_map, tokenizer), vocab_size=len(tokenizer))
    tokenizer.padding_side = "left"
    rng = np.random.default_rng(2)
    prompts = ["".join(sid_map.tokens_of(i) for i in rng.choice(sid_map.item_ids, size=n)) for n in (1, 4, 9)]
    return model, tokenizer, trie, tokenizer(prompts, return_tensors="pt", padding=True)


@pytest.mark.parametrize("beams", [1, 7, 20])
def test_shared_prefix_equals_standard_cache(setup, beams):
    model, tokenizer, trie, enc = setup
    assert supports_shared_prefix(model)
    outs = [
        sid_beam_search(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            trie,
            eos_token_id=tokenizer.eos_token_id,
            num_beams=beams,
            shared_prefix=shared,
        )
        for shared in (True, False)
    ]
    assert outs[0].items.tolist() == outs[1].items.tolist()
    assert torch.allclose(outs[0].scores, outs[1].scores, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # the search restored the model's own attention


def test_sliding_window_models_use_the_standard_cache():
    config = Qwen3Config(
        **SIZES, num_attention_heads=2, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    assert not supports_shared_prefix(Qwen3ForCausalLM(config))
