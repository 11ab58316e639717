"""Constrained beam search over SID levels that prefills each prompt once and shares its KV cache across beams.

`model.generate(num_beams=20)` repeats every prompt 20 times and prefills all copies; here the prompt is run once
per user, its cache is repeated to the beam rows, and each of the L + 2 steps feeds one token per beam row.
Candidate selection follows transformers' beam search (2 x beams candidates per step; a hypothesis ends when it
emits EOS within the first `num_beams` ranks; final scores are divided by generated length ** length_penalty),
so it ranks items as `generate` with a constraining logits processor does.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from deepinterestgr.recommender.constrained import SIDTrie


@dataclass
class BeamSearchOutput:
    items: torch.LongTensor  # (batch, num_beams) catalogue row of each hypothesis, best first; -1 when fewer
    scores: torch.FloatTensor  # (batch, num_beams) length-normalised log-probabilities; -inf when fewer


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _forward_kwargs(model: PreTrainedModel) -> tuple[dict, str]:
    """Extra forward kwargs and the name of the cache argument, read once per search from the model's signature:
    `logits_to_keep=1` where supported, and `cache` (transformers >= 5.2x) or the older `past_key_values`."""
    parameters = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    return extra, "cache" if "cache" in parameters else "past_key_values"


@torch.no_grad()
def sid_beam_search(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    trie: SIDTrie,
    *,
    eos_token_id: int,
    num_beams: int = 20,
    length_penalty: float = 1.0,
) -> BeamSearchOutput:
    """Top `num_beams` catalogue items per left-padded prompt, by constrained beam search."""
    batch, device = input_ids.shape[0], input_ids.device
    rows = batch * num_beams
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    extra, cache_argument = _forward_kwargs(model)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, **extra)
    cache = _output_cache(out)
    cache.batch_repeat_interleave(num_beams)
    logits = out.logits[:, -1].float().repeat_interleave(num_beams, dim=0)
    attention = attention_mask.repeat_interleave(num_beams, dim=0)
    position = position_ids[:, -1:].repeat_interleave(num_beams, dim=0)
    beam_scores = torch.full((batch, num_beams), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: expand from the first only
    nodes = torch.zeros(rows, dtype=torch.long, device=device)
    user_offset = (torch.arange(batch, device=device) * num_beams).unsqueeze(1)
    done_items, done_scores = [], []
    for depth in range(trie.depth):
        # log-softmax over the whole vocabulary (as `generate` scores), read only at this depth's K + 1 columns
        columns = trie.columns[depth]
        logp = logits[:, columns] - torch.logsumexp(logits, dim=-1, keepdim=True)
        width = len(columns)
        scores = logp.masked_fill(~trie.allowed_column_mask(depth, nodes), float("-inf")) + beam_scores.view(-1, 1)
        top_scores, top_index = scores.view(batch, num_beams * width).topk(min(2 * num_beams, num_beams * width), dim=1)
        origin = top_index // width + user_offset
        token = columns[top_index % width]
        child = trie.step(depth, nodes[origin].view(-1), token.view(-1)).view(batch, -1)
        finite = torch.isfinite(top_scores)
        is_eos = finite & (token == eos_token_id)
        finished = is_eos & (torch.arange(top_scores.shape[1], device=device) < num_beams)
        done_items.append(torch.where(finished, trie.item_at(depth, child), -1))
        done_scores.append(torch.where(finished, top_scores / float(depth + 1) ** length_penalty, float("-inf")))
        alive = finite & ~is_eos
        keep = alive & (alive.long().cumsum(dim=1) <= num_beams)
        if depth + 1 == trie.depth or not bool(keep.any()):
            break
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :num_beams]
        beam_scores = torch.where(keep.gather(1, order), top_scores.gather(1, order), float("-inf"))
        selected = origin.gather(1, order).view(-1)
        nodes = child.gather(1, order).view(-1)
        cache.reorder_cache(selected)
        attention = torch.cat([attention[selected], attention.new_ones(rows, 1)], dim=1)
        position = position[selected] + 1
        out = model(
            input_ids=token.gather(1, order).view(-1, 1),
            attention_mask=attention,
            position_ids=position,
            use_cache=True,
            **extra,
            **{cache_argument: cache},
        )
        logits = out.logits[:, -1].float()
    all_scores, all_items = torch.cat(done_scores, dim=1), torch.cat(done_items, dim=1)
    best_scores, best = all_scores.topk(min(num_beams, all_scores.shape[1]), dim=1)
    best_items = torch.where(torch.isfinite(best_scores), all_items.gather(1, best), -1)
    return BeamSearchOutput(items=best_items, scores=best_scores)
