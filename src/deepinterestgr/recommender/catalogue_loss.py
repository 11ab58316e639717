"""Catalogue softmax: the SFT loss with each SID token normalised over the tokens the catalogue trie allows there.

Our own code because it is the training half of constrained decoding. TRL's loss normalises every token over the
whole vocabulary; with one suffix token per item (`suffix="item"`) that vocabulary has a row per item and the
softmax over it is nearly all of a CPU epoch (62 of 70 s on Beauty, benchmarks/suffix_cost.py), although at the
suffix step only the few items sharing the first codes can follow. Here each SID token is scored against its
siblings in the trie only: a first code against every first code, a later code or suffix against the children of
its item prefix, and the end of an item (EOS, also where the next item's first code follows in the `sequence`
task) against the suffixes that could continue it instead. The product over an item's tokens is then exactly
P(item | history) as the beam search ranks it with `sid_softmax="catalogue"`, and as GRPO's constrained policy
scores it. Forced tokens (one child) have log-probability 0 and are not computed. Labels outside the trie (the
text of alignment tasks) keep the full-vocabulary softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from trl import SFTTrainer

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender.beam_search import plain_output_head
from deepinterestgr.recommender.constrained import SIDTrie

DENSE_COLUMNS = 2048  # depths with at most this many distinct tokens score all of them in one matmul


@dataclass
class CatalogueTargets:
    """Where each label is scored: `row` indexes the flattened (batch x (T - 1)) hidden states that predict it."""

    row: torch.LongTensor  # (n,) hidden position of a target scored within the trie
    depth: torch.LongTensor  # (n,) trie depth of its item prefix (0: a first code)
    node: torch.LongTensor  # (n,) trie node of that prefix
    token: torch.LongTensor  # (n,) target token id
    vocab_row: torch.LongTensor  # (m,) hidden position of a target outside the trie (full-vocabulary softmax)
    vocab_token: torch.LongTensor  # (m,)


def token_depths(trie: SIDTrie, *, eos_token_id: int) -> torch.LongTensor:
    """(V,) depth at which each SID token occurs in the catalogue's paths; -1 for other tokens and for EOS, whose
    depth depends on the item."""
    depth = torch.full((trie.vocab_size,), -1, dtype=torch.long, device=trie.columns[0].device)
    for d, columns in enumerate(trie.columns):
        depth[columns] = d
    depth[eos_token_id] = -1
    return depth


def _child(trie: SIDTrie, depth: torch.LongTensor, node: torch.LongTensor, token: torch.LongTensor):
    """Child of each row's `node` (at the row's `depth`) by `token`, -1 where it is not a catalogue prefix, and
    the number of children of `node`."""
    child, count = torch.full_like(node, -1), torch.zeros_like(node)
    for d in range(trie.depth):
        at = (depth == d) & (node >= 0)
        if at.any():
            child[at] = trie.step(d, node[at], token[at])
            count[at] = trie.child_end[d][node[at]] - trie.child_start[d][node[at]]
    return child, count


def catalogue_targets(
    input_ids: torch.LongTensor, labels: torch.LongTensor, trie: SIDTrie, depths: torch.LongTensor, *, eos_token_id: int
) -> CatalogueTargets:
    """Trie node of every label's item prefix, vectorised over the batch (one pass per trie depth)."""
    inputs, targets = input_ids[:, :-1], labels[:, 1:]  # hidden position t predicts token t + 1
    level = depths[inputs]
    after = torch.full_like(inputs, -1)  # node reached by the SID token at each position (a node at depth level + 1)
    for d in range(trie.depth - 1):
        at = level == d
        if at.any():
            previous = torch.zeros_like(inputs) if d == 0 else torch.nn.functional.pad(after[:, :-1], (1, 0), value=-1)
            after = torch.where(at, trie.step(d, previous, inputs), after)
    labelled = targets != -100
    target_level = depths[targets.clamp(min=0)]
    prefix_depth, in_item = level + 1, after >= 0
    first = labelled & (target_level == 0)
    inner = labelled & (target_level > 0) & in_item & (target_level == prefix_depth)
    closing = labelled & (targets == eos_token_id) & in_item
    rows = (first | inner | closing).flatten().nonzero().squeeze(-1)
    depth = torch.where(first, 0, prefix_depth).flatten()[rows]
    node = torch.where(first, 0, after).flatten()[rows]
    token = targets.flatten()[rows]
    child, count = _child(trie, depth, node, token)
    outside = labelled.flatten().clone()  # labels the trie does not allow keep the full softmax
    outside[rows[child >= 0]] = False
    keep = (child >= 0) & (count > 1)
    # where the next item's first code follows a complete item, that item's end (EOS) is scored there too
    ends = (first & in_item).flatten().nonzero().squeeze(-1)
    end_depth, end_node = prefix_depth.flatten()[ends], after.flatten()[ends]
    end_token = torch.full_like(ends, eos_token_id)
    end_child, end_count = _child(trie, end_depth, end_node, end_token)
    end_keep = (end_child >= 0) & (end_count > 1)
    return CatalogueTargets(
        row=torch.cat([rows[keep], ends[end_keep]]),
        depth=torch.cat([depth[keep], end_depth[end_keep]]),
        node=torch.cat([node[keep], end_node[end_keep]]),
        token=torch.cat([token[keep], end_token[end_keep]]),
        vocab_row=outside.nonzero().squeeze(-1),
        vocab_token=targets.flatten()[outside],
    )


def catalogue_nll(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: CatalogueTargets, trie: SIDTrie
) -> torch.Tensor:
    """Summed negative log-likelihood of the targets; `hidden` (positions, H) are the flattened final hidden
    states, `weight`/`bias` the output head. Depths with few distinct tokens score them all in one matmul and
    mask; the others (a suffix per item) gather each prefix's children (`_family_nll`)."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for d in targets.depth.unique().tolist():
        at = targets.depth == d
        h, node, token = hidden[targets.row[at]], targets.node[at], targets.token[at]
        columns = trie.columns[d]
        if len(columns) > DENSE_COLUMNS:
            total = total + _family_nll(h, node, token, weight, bias, trie, d)
            continue
        logits = torch.nn.functional.linear(h, weight[columns], None if bias is None else bias[columns]).float()
        logits = logits.masked_fill(~trie.allowed_column_mask(d, node), float("-inf"))
        chosen = trie.column_of[d][token]
        total = total - logits.log_softmax(-1).gather(1, chosen[:, None]).sum()
    if len(targets.vocab_row):
        logits = torch.nn.functional.linear(hidden[targets.vocab_row], weight, bias).float()
        total = total - logits.log_softmax(-1).gather(1, targets.vocab_token[:, None]).sum()
    return total


def _family_nll(
    h: torch.Tensor,
    node: torch.LongTensor,
    token: torch.LongTensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    trie: SIDTrie,
    depth: int,
) -> torch.Tensor:
    """Summed NLL of `token` among the children of `node` (each row's own family).

    Rows are grouped by family, and each family's rows of the head are read once and multiplied with all of the
    group's hidden states in one matmul. Gathering a copy of the family for every row instead (padded, as an
    (n, family, H) tensor) moved n times more memory in the forward pass and scattered as much in the backward
    pass: about half of an SFT step on Beauty (benchmarks/family_gather.py). The target's logit is one dot product
    per row, so each group only needs its log-sum-exp.
    """
    chosen = (h * weight[token]).sum(-1).float() + (0.0 if bias is None else bias[token].float())
    order = node.argsort()
    families, rows_per_family = torch.unique_consecutive(node[order], return_counts=True)
    size = trie.child_end[depth][families] - trie.child_start[depth][families]
    _, tokens = trie.children(depth, families)  # every family's tokens, family after family
    # one gather of every family's rows: a gather per family would also build a vocabulary-sized gradient per family
    rows, heads = h[order].split(rows_per_family.tolist()), weight[tokens].split(size.tolist())
    biases = [None] * len(heads) if bias is None else bias[tokens].split(size.tolist())
    norms = []
    for hidden_rows, head, head_bias in zip(rows, heads, biases, strict=True):
        logits = torch.nn.functional.linear(hidden_rows, head, head_bias)
        norms.append(logits.float().logsumexp(-1))
    return torch.cat(norms).sum() - chosen.sum()


class CatalogueSFTTrainer(SFTTrainer):
    """TRL's `SFTTrainer` with the catalogue softmax as its loss (see the module docstring).

    The model runs with `logits_to_keep=1`, so no vocabulary-wide logits are built; a forward hook on its decoder
    takes the final hidden states, which are projected on the output head for the allowed tokens only.
    """

    def __init__(self, *args, trie: SIDTrie, **kwargs):
        super().__init__(*args, **kwargs)
        if plain_output_head(self.accelerator.unwrap_model(self.model)) is None:
            raise ConfigError(
                "sid_softmax: catalogue projects hidden states onto the output head, but this model's logits are not "
                "a plain linear map of them (a scaled or soft-capped head); train it with sft.sid_softmax: vocabulary"
            )
        self.trie = trie
        self.eos_token_id = self.processing_class.eos_token_id
        self.depths = token_depths(trie, eos_token_id=self.eos_token_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("the catalogue softmax builds no logits to return; evaluate with the beam search")
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        device = labels.device
        if self.depths.device != device:
            self.trie, self.depths = self.trie.to(device), self.depths.to(device)
        unwrapped = self.accelerator.unwrap_model(model)
        captured = []
        handle = unwrapped.get_decoder().register_forward_hook(
            lambda module, args, output: captured.append(output[0])  # last_hidden_state, after the final norm
        )
        try:
            model(**inputs, use_cache=False, logits_to_keep=1)
        finally:
            handle.remove()
        hidden = captured[-1][:, :-1].flatten(0, 1)
        head = unwrapped.get_output_embeddings()
        targets = catalogue_targets(inputs["input_ids"], labels, self.trie, self.depths, eos_token_id=self.eos_token_id)
        nll = catalogue_nll(hidden, head.weight, getattr(head, "bias", None), targets, self.trie)
        num_tokens = (labels[:, 1:] != -100).sum() if num_items_in_batch is None else num_items_in_batch
        loss = nll / torch.as_tensor(num_tokens, device=device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients across ranks
        return loss
