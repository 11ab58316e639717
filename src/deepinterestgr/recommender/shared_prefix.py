"""Beam decoding with the prompt's keys/values stored once per user instead of once per beam.

Our own code because it is where constrained beam search spends its time on CPU: with a standard KV cache,
every one of the B beams of a user holds a copy of the prompt's keys/values, and each step copies all of them
again (`reorder_cache` is an index_select, the cache append a `cat`), which was ~65% of the search time of a
2.8M Llama on 2 cores, against ~12% for the matmuls. Here the prompt's keys/values stay at (users, heads, P, d)
and only each beam's few generated tokens are cached, reordered and appended; one attention softmax spans both.

It plugs into transformers through its public extension points: a registered attention function
(`AttentionInterface`) and a cache object passed as the model's cache. Models whose attention is not the plain
causal softmax (sliding windows, logit soft-capping) or that cannot switch attention function use the standard
cache instead (`supports_shared_prefix`).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, PreTrainedModel

ATTENTION_NAME = "deepinterestgr_shared_prefix"
_STATE_KWARG = "shared_prefix_state"


def supports_shared_prefix(model: PreTrainedModel) -> bool:
    """Whether `model` can decode with a shared prompt cache: functional attention, full causal attention in
    every layer, no soft-capping."""
    config = model.config
    if not model._can_set_attn_implementation():
        return False
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return False
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return False
    return getattr(config, "attn_logit_softcapping", None) is None


class SharedPrefixCache:
    """Per layer: the prompt's keys/values (users, kv_heads, P, d) with its padding as an additive bias, and the
    generated tokens' keys/values (users x beams, kv_heads, t, d). Rows are user-major: row = user * beams + b."""

    def __init__(self, prompt_cache, attention_mask: torch.LongTensor, dtype: torch.dtype):
        self.prefix_keys = [layer.keys for layer in prompt_cache.layers]
        self.prefix_values = [layer.values for layer in prompt_cache.layers]
        pad = attention_mask[:, None, None, :] == 0  # (users, 1, 1, P)
        self.prefix_bias = torch.zeros(pad.shape, dtype=dtype, device=attention_mask.device).masked_fill(
            pad, torch.finfo(dtype).min
        )
        self.keys: list[torch.Tensor | None] = [None] * len(self.prefix_keys)
        self.values: list[torch.Tensor | None] = [None] * len(self.prefix_keys)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Append one step's keys/values for every beam row (transformers' cache protocol)."""
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key_states], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value_states], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]

    def reorder(self, rows: torch.LongTensor) -> None:
        """Keep the generated keys/values of `rows` (parent beams), in that order; the prompt part is untouched."""
        self.keys = [None if k is None else k[rows] for k in self.keys]
        self.values = [None if v is None else v[rows] for v in self.values]

    def forward_kwargs(self) -> dict:
        return {_STATE_KWARG: self}


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Softmax attention of one new token per beam row over [its user's prompt ; the row's generated tokens].

    `query` is (rows, heads, 1, d); `key`/`value` are the rows' generated keys/values from the cache update.
    Returns (rows, 1, heads, d) like transformers' sdpa function.
    """
    state: SharedPrefixCache = kwargs[_STATE_KWARG]
    prefix_k, prefix_v = state.prefix_keys[module.layer_idx], state.prefix_values[module.layer_idx]
    users, kv_heads, prompt_len, dim = prefix_k.shape
    rows, heads = query.shape[0], query.shape[1]
    beams, groups = rows // users, heads // kv_heads
    scaling = dim**-0.5 if scaling is None else scaling
    # prompt part, one matmul per user: (users, kv_heads, beams * groups, d) @ (users, kv_heads, d, P)
    q_user = query.view(users, beams, kv_heads, groups, dim).transpose(1, 2).reshape(users, kv_heads, -1, dim)
    prompt_scores = torch.matmul(q_user, prefix_k.transpose(-1, -2)) * scaling + state.prefix_bias
    prompt_scores = prompt_scores.view(users, kv_heads, beams, groups, prompt_len).transpose(1, 2)
    # generated part, per row: (rows, kv_heads, groups, d) @ (rows, kv_heads, d, t)
    q_row = query.view(rows, kv_heads, groups, dim)
    own_scores = torch.matmul(q_row, key.transpose(-1, -2)) * scaling
    scores = torch.cat([prompt_scores.reshape(rows, kv_heads, groups, prompt_len), own_scores], dim=-1)
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    prompt_probs = probs[..., :prompt_len].reshape(users, beams, kv_heads, groups, prompt_len).transpose(1, 2)
    out = torch.matmul(prompt_probs.reshape(users, kv_heads, -1, prompt_len), prefix_v)  # (users, kv, b*g, d)
    out = out.view(users, kv_heads, beams, groups, dim).transpose(1, 2).reshape(rows, kv_heads, groups, dim)
    out = out + torch.matmul(probs[..., prompt_len:], value)
    return out.reshape(rows, 1, heads, dim), None


AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)
