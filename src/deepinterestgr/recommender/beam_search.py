"""Constrained beam search over SID levels that prefills each prompt once and shares it across beams.

`model.generate(num_beams=20)` repeats every prompt 20 times and prefills all copies; here the prompt is run once
per user and each of the L + 2 steps feeds one token per live beam row. Where the model allows it the prompt's
keys/values are never copied to the beams at all (`shared_prefix`); otherwise the standard cache is expanded.
Candidate selection follows transformers' beam search (2 x beams candidates per step; a hypothesis ends when it
emits EOS within the first `num_beams` ranks; final scores are divided by generated length ** length_penalty),
so it ranks items as `generate` with a constraining logits processor does. Beam rows that can no longer be
filled (e.g. after the last code most items end, and only colliding ones go on to a suffix) are dropped from
the following forwards instead of being computed and masked.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from deepinterestgr.recommender.constrained import SIDTrie
from deepinterestgr.recommender.prefix_lm import prefix_lm_mask
from deepinterestgr.recommender.shared_prefix import ATTENTION_NAME, SharedPrefixCache, supports_shared_prefix


@dataclass
class BeamSearchOutput:
    items: torch.LongTensor  # (batch, num_beams) catalogue row of each hypothesis, best first; -1 when fewer
    scores: torch.FloatTensor  # (batch, num_beams) length-normalised log-probabilities; -inf when fewer
    token_logprobs: torch.FloatTensor  # (batch, num_beams, depth) log-probability of each token of the path; 0 after


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _forward_kwargs(model: PreTrainedModel) -> tuple[dict, str]:
    """Extra forward kwargs and the name of the cache argument, read once per search from the model's signature:
    `logits_to_keep=1` where supported, and `cache` (transformers >= 5.2x) or the older `past_key_values`."""
    parameters = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    return extra, "cache" if "cache" in parameters else "past_key_values"


@contextmanager
def _attention(model: PreTrainedModel, name: str):
    """Switch the model's attention function for the duration of a search."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def plain_output_head(model: PreTrainedModel) -> torch.nn.Linear | None:
    """The output head when logits are exactly `head(decoder hidden state)` (a linear layer, no scaling or
    soft-capping), so that the catalogue softmax may project hidden states onto the few columns it reads (in
    training and in the search); else None."""
    head, config = model.get_output_embeddings(), model.config.get_text_config()
    scaled = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier")
    if not isinstance(head, torch.nn.Linear) or any(getattr(config, name, None) is not None for name in scaled):
        return None
    return head if model.get_decoder() is not model else None


class _Decoder:
    """One cached forward per step over the live beam rows, after the prompt's prefill. With `hidden`, the
    decoder's last hidden states instead of logits (the caller projects them onto the columns it needs)."""

    def __init__(
        self, model: PreTrainedModel, input_ids, attention_mask, position_ids, *, shared: bool, bidirectional: bool,
        hidden: bool,
    ):  # fmt: skip
        self.net, self.shared, self.hidden = model.get_decoder() if hidden else model, shared, hidden
        self.extra, self.cache_argument = _forward_kwargs(self.net)
        prefill_mask = prefix_lm_mask(attention_mask, attention_mask, model) if bidirectional else attention_mask
        out = self.net(
            input_ids=input_ids, attention_mask=prefill_mask, position_ids=position_ids, use_cache=True, **self.extra
        )
        self.prefill_logits = self._last(out)
        if shared:
            self.cache = SharedPrefixCache(_output_cache(out), attention_mask, model.dtype)
        else:
            self.cache, self.attention = _output_cache(out), attention_mask

    def _last(self, out) -> torch.Tensor:
        return out.last_hidden_state[:, -1] if self.hidden else out.logits[:, -1].float()

    def step(self, parents: torch.LongTensor, tokens: torch.LongTensor, position: torch.LongTensor) -> torch.Tensor:
        """Logits (or hidden states) after feeding `tokens` (rows, 1) to the beams continuing the rows `parents`."""
        if self.shared:
            self.cache.reorder(parents)
            kwargs = {"attention_mask": None, **self.cache.forward_kwargs()}
        else:
            self.cache.reorder_cache(parents)
            self.attention = torch.cat([self.attention[parents], self.attention.new_ones(len(parents), 1)], dim=1)
            kwargs = {"attention_mask": self.attention}
        out = self.net(
            input_ids=tokens, position_ids=position, use_cache=True, **kwargs, **self.extra,
            **{self.cache_argument: self.cache},
        )  # fmt: skip
        return self._last(out)


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
    shared_prefix: bool | None = None,
    bidirectional_prompt: bool = False,
    sid_softmax: str = "vocabulary",
    exclude: torch.LongTensor | None = None,
) -> BeamSearchOutput:
    """Top `num_beams` catalogue items per left-padded prompt, by constrained beam search.

    `shared_prefix`: keep one copy of each prompt's keys/values for all its beams (default: where the model
    supports it); `False` uses the model's standard cache, expanded to the beams. `bidirectional_prompt`: the
    prompt's tokens attend to each other both ways (a model trained with `prompt_attention="bidirectional"`).
    `sid_softmax`: `vocabulary` scores each token by the softmax over the whole vocabulary (as `generate` does);
    `catalogue` over the tokens the trie allows after the beam's prefix (a model trained with that loss).
    `exclude`: (batch, m) catalogue rows never to return for each prompt (-1 pads), e.g. the items a user already
    has. They are dropped after normalisation, so every other item keeps its score and rank order, and the search
    fills their places with the next items.
    """
    batch, device = input_ids.shape[0], input_ids.device
    shared = supports_shared_prefix(model) if shared_prefix is None else shared_prefix
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    # the catalogue softmax reads each depth's K + 1 columns only: project hidden states onto those rows of the
    # head instead of computing the whole vocabulary's logits (one row per item with per-item suffixes)
    head = plain_output_head(model) if sid_softmax == "catalogue" else None
    decoder = _Decoder(
        model, input_ids, attention_mask, position_ids, shared=shared, bidirectional=bidirectional_prompt,
        hidden=head is not None,
    )  # fmt: skip
    logits = decoder.prefill_logits  # one row per user: all beams start as the same empty hypothesis
    beam_scores = torch.zeros(batch, 1, device=device)
    nodes = torch.zeros(batch, dtype=torch.long, device=device)
    position = position_ids[:, -1:]
    path_logps = torch.zeros(batch, 0, device=device)  # (rows, depth so far): token log-probs of each open beam
    ranks = torch.arange(2 * num_beams, device=device)
    done_items, done_scores, done_logps = [], [], []
    with _attention(model, ATTENTION_NAME) if shared else _nothing():
        for depth in range(trie.depth):
            # log-softmax over the vocabulary or the allowed tokens, read only at this depth's K + 1 columns
            columns = trie.columns[depth]
            width, beams = len(columns), beam_scores.shape[1]
            allowed = trie.allowed_column_mask(depth, nodes)
            if head is None:
                logp = logits[:, columns]
            else:
                bias = None if head.bias is None else head.bias[columns]
                logp = torch.nn.functional.linear(logits, head.weight[columns], bias).float()
            logp = logp.masked_fill(~allowed, float("-inf"))
            normaliser = logits if sid_softmax == "vocabulary" else logp
            logp = logp - torch.logsumexp(normaliser, dim=-1, keepdim=True).clamp(min=-1e30)  # rows with no child
            if exclude is not None:
                banned = trie.excluded_column_mask(depth, nodes, exclude.repeat_interleave(beams, dim=0))
                logp = logp.masked_fill(banned, float("-inf"))
            scores = logp + beam_scores.view(-1, 1)
            top_scores, top_index = scores.view(batch, beams * width).topk(min(2 * num_beams, beams * width), dim=1)
            origin = top_index // width + (torch.arange(batch, device=device) * beams).unsqueeze(1)
            token = columns[top_index % width]
            child = trie.step(depth, nodes[origin].view(-1), token.view(-1)).view(batch, -1)
            candidate_logps = torch.cat(
                [path_logps[origin], (top_scores - beam_scores.view(-1)[origin]).unsqueeze(-1)], dim=-1
            )  # (batch, candidates, depth + 1)
            finite = torch.isfinite(top_scores)
            is_eos = finite & (token == eos_token_id)
            finished = is_eos & (ranks[: top_scores.shape[1]] < num_beams)
            done_items.append(torch.where(finished, trie.item_at(depth, child), -1))
            done_scores.append(torch.where(finished, top_scores / float(depth + 1) ** length_penalty, float("-inf")))
            done_logps.append(torch.nn.functional.pad(candidate_logps, (0, trie.depth - depth - 1)))
            alive = finite & ~is_eos
            keep = alive & (alive.long().cumsum(dim=1) <= num_beams)
            live = int(keep.sum(dim=1).max())  # beams still open for the fullest user; fewer rows next step
            if depth + 1 == trie.depth or live == 0:
                break
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :live]
            beam_scores = torch.where(keep.gather(1, order), top_scores.gather(1, order), float("-inf"))
            parents = origin.gather(1, order).view(-1)
            nodes = child.gather(1, order).view(-1)
            path_logps = candidate_logps.gather(1, order.unsqueeze(-1).expand(-1, -1, depth + 1)).flatten(0, 1)
            position = position[parents] + 1
            logits = decoder.step(parents, token.gather(1, order).view(-1, 1), position)
    all_scores, all_items = torch.cat(done_scores, dim=1), torch.cat(done_items, dim=1)
    best_scores, best = all_scores.topk(min(num_beams, all_scores.shape[1]), dim=1)
    found = torch.isfinite(best_scores)
    best_items = torch.where(found, all_items.gather(1, best), -1)
    best_logps = torch.cat(done_logps, dim=1).gather(1, best.unsqueeze(-1).expand(-1, -1, trie.depth))
    best_logps = best_logps.masked_fill(~found.unsqueeze(-1), 0.0)
    pad = num_beams - best_items.shape[1]
    if pad > 0:  # tiny catalogues: pad to the promised width
        best_items = torch.nn.functional.pad(best_items, (0, pad), value=-1)
        best_scores = torch.nn.functional.pad(best_scores, (0, pad), value=float("-inf"))
        best_logps = torch.nn.functional.pad(best_logps, (0, 0, 0, pad))
    return BeamSearchOutput(items=best_items, scores=best_scores, token_logprobs=best_logps)


@contextmanager
def _nothing():
    yield
