"""Bidirectional attention over the prompt (a prefix LM), causal over the completion.

In an encoder-decoder SID recommender (TIGER) every history token sees the whole history; in a causal LM a
history token sees only what came before it, so an item's first code never sees the rest of the history. With
`prompt_attention="bidirectional"` the prompt's tokens attend to each other both ways and the generated SID stays
causal: the encoder's view of the history inside one decoder. It needs one target per example (the `next_item`
task): in the `sequence` form the later items are completion, which must stay causal.

No model code changes: transformers' Llama-style decoders take a ready 4D mask as it is. Training adds the mask
through the collator (a `prompt_mask` key) and a forward pre-hook that turns it into the 4D mask, so TRL's own
use of the 2D `attention_mask` (token counts) is untouched; the beam search builds it for the prefill.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

PROMPT_MASK = "prompt_mask"  # collator key: True on real prompt tokens


def prefix_lm_mask(attention_mask: torch.Tensor, prompt_mask: torch.Tensor, model: PreTrainedModel) -> torch.Tensor:
    """(batch, 1, T, T) mask: causal, plus every prompt token attending to every prompt token; padding is never
    attended (a padding row attends to itself only, so no softmax row is empty). Boolean (True = attend) for
    SDPA-style attention, additive floats for eager attention."""
    length, device = attention_mask.shape[1], attention_mask.device
    real = attention_mask.bool()
    prompt = prompt_mask.bool() & real
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    allowed = (causal | (prompt[:, :, None] & prompt[:, None, :])) & real[:, None, :]
    allowed = allowed | torch.eye(length, dtype=torch.bool, device=device)
    if model.config._attn_implementation == "eager":
        return torch.zeros(allowed.shape, dtype=model.dtype, device=device).masked_fill(
            ~allowed, torch.finfo(model.dtype).min
        )[:, None]
    return allowed[:, None]


class PrefixLMCollator:
    """Wraps TRL's collator: adds `prompt_mask` (the tokens without a label that are not padding)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        batch[PROMPT_MASK] = (batch["labels"] == -100) & batch["attention_mask"].bool()
        return batch


@contextmanager
def prompt_attention_hook(model: PreTrainedModel) -> Iterator[None]:
    """While the block runs, a forward given `prompt_mask` attends bidirectionally over those tokens."""

    def hook(module, args, kwargs):
        prompt = kwargs.pop(PROMPT_MASK, None)
        if prompt is not None:
            kwargs["attention_mask"] = prefix_lm_mask(kwargs["attention_mask"], prompt, model)
        return args, kwargs

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
