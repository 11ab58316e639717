"""The catalogue as a token trie on tensors, and a `LogitsProcessor` that allows only real items' SIDs.

Our own code because this is where generative recommenders spend their time: peers walk a Python dict trie once
per beam row per step (`prefix_allowed_tokens_fn`). Here every step is a few tensor operations over all rows:
a `searchsorted` moves each row to its child node and a `repeat_interleave` scatters the allowed tokens.
Memory is O(items x depth) int64, independent of the vocabulary size.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class SIDTrie:
    """Prefix trie of the catalogue's token paths (`sid_paths`: codes, optional suffix, EOS; -1 pads).

    Nodes at depth d are the distinct path prefixes of length d, numbered in sorted order; the root is node 0
    at depth 0. A node's children are contiguous in the next depth's sorted `keys` (parent * V + token).
    """

    def __init__(self, paths: torch.LongTensor, *, vocab_size: int):
        paths = paths.to(torch.long).cpu()
        self.vocab_size = int(vocab_size)
        self.depth = paths.shape[1]
        self.num_items = paths.shape[0]
        self.keys: list[torch.Tensor] = []  # keys[d]: sorted parent*V+token of the nodes at depth d+1
        self.child_start: list[torch.Tensor] = []  # for nodes at depth d: first child position in keys[d]
        self.child_end: list[torch.Tensor] = []
        self.leaf_item: list[torch.Tensor] = []  # for nodes at depth d+1: item index if the node ends a path, else -1
        self.sole_item: list[torch.Tensor] = []  # for nodes at depth d+1: the item if only one path passes, else -1
        self.columns: list[torch.Tensor] = []  # columns[d]: every token that can appear at depth d (sorted)
        self.column_of: list[torch.Tensor] = []  # column_of[d][token]: its position in columns[d], or -1
        node = torch.zeros(self.num_items, dtype=torch.long)  # each item's node at the current depth
        alive = torch.ones(self.num_items, dtype=torch.bool)
        num_nodes = 1
        for d in range(self.depth):
            token = paths[:, d]
            alive = alive & (token >= 0)
            key = node[alive] * self.vocab_size + token[alive]
            keys, inverse = torch.unique(key, sorted=True, return_inverse=True)
            parents = torch.arange(num_nodes, dtype=torch.long)
            self.keys.append(keys)
            self.child_start.append(torch.searchsorted(keys, parents * self.vocab_size))
            self.child_end.append(torch.searchsorted(keys, (parents + 1) * self.vocab_size))
            new_node = torch.full_like(node, -1)
            new_node[alive] = inverse
            ends = alive & (paths[:, d + 1] < 0) if d + 1 < self.depth else alive
            leaf = torch.full((len(keys),), -1, dtype=torch.long)
            leaf[new_node[ends]] = torch.nonzero(ends).squeeze(-1)
            self.leaf_item.append(leaf)
            sole = torch.full((len(keys),), -1, dtype=torch.long)
            sole[new_node[alive]] = torch.nonzero(alive).squeeze(-1)
            sole[torch.bincount(new_node[alive], minlength=len(keys)) > 1] = -1
            self.sole_item.append(sole)
            columns = torch.unique(keys % self.vocab_size)
            column_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
            column_of[columns] = torch.arange(len(columns))
            self.columns.append(columns)
            self.column_of.append(column_of)
            node, num_nodes = new_node, len(keys)

    def nbytes(self) -> int:
        """Memory held by the trie's tensors."""
        tensors = [*self.keys, *self.child_start, *self.child_end, *self.leaf_item, *self.sole_item, *self.columns]
        tensors += self.column_of
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> SIDTrie:
        for name in ("keys", "child_start", "child_end", "leaf_item", "sole_item", "columns", "column_of"):
            setattr(self, name, [t.to(device) for t in getattr(self, name)])
        return self

    def step(self, depth: int, node: torch.LongTensor, token: torch.LongTensor) -> torch.LongTensor:
        """Node reached from `node` (at `depth`) by `token`; -1 where that is not a catalogue prefix."""
        keys = self.keys[depth]
        key = node.clamp(min=0) * self.vocab_size + token
        pos = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
        found = (keys[pos] == key) & (node >= 0)
        return torch.where(found, pos, torch.full_like(pos, -1))

    def allowed_mask(self, depth: int, node: torch.LongTensor) -> torch.BoolTensor:
        """(rows, V) mask of the tokens allowed after each row's node; all False for -1 or depth past the end."""
        mask = torch.zeros(len(node), self.vocab_size, dtype=torch.bool, device=node.device)
        if depth >= self.depth:
            return mask
        rows, children = self.children(depth, node)
        mask[rows, children] = True
        return mask

    def allowed_column_mask(self, depth: int, node: torch.LongTensor) -> torch.BoolTensor:
        """(rows, len(columns[depth])) mask: the same as `allowed_mask` restricted to the tokens of this depth,
        which is all beam search needs (K + 1 columns instead of the whole vocabulary)."""
        mask = torch.zeros(len(node), len(self.columns[depth]), dtype=torch.bool, device=node.device)
        rows, children = self.children(depth, node)
        mask[rows, self.column_of[depth][children]] = True
        return mask

    def excluded_column_mask(self, depth: int, node: torch.LongTensor, excluded: torch.LongTensor) -> torch.BoolTensor:
        """(rows, len(columns[depth])) mask of the tokens that lead each row to a node only one item passes
        through, when that item is among the row's `excluded` (rows, m) catalogue rows (-1 pads): masking them
        drops those items from the search at the first token that singles them out."""
        mask = torch.zeros(len(node), len(self.columns[depth]), dtype=torch.bool, device=node.device)
        rows, child = self._child_nodes(depth, node)
        item = self.sole_item[depth][child]
        hit = (item >= 0) & (excluded[rows] == item.unsqueeze(-1)).any(dim=-1)
        tokens = self.keys[depth][child[hit]] % self.vocab_size
        mask[rows[hit], self.column_of[depth][tokens]] = True
        return mask

    def children(self, depth: int, node: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """(row, child token) pairs of every row's node, one pair per allowed token."""
        rows, child = self._child_nodes(depth, node)
        return rows, self.keys[depth][child] % self.vocab_size

    def _child_nodes(self, depth: int, node: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """(row, child node at depth + 1) pairs of every row's node."""
        valid = node >= 0
        start = torch.where(valid, self.child_start[depth][node.clamp(min=0)], 0)
        count = torch.where(valid, self.child_end[depth][node.clamp(min=0)] - start, 0)
        rows = torch.repeat_interleave(torch.arange(len(node), device=node.device), count)
        offsets = torch.arange(int(count.sum()), device=node.device) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        return rows, torch.repeat_interleave(start, count) + offsets

    def item_at(self, depth: int, node: torch.LongTensor) -> torch.LongTensor:
        """Item index of a node at `depth` + 1 that completes a path (after EOS), else -1."""
        leaf = self.leaf_item[depth]
        return torch.where(node >= 0, leaf[node.clamp(min=0)], torch.full_like(node, -1))

    def walk(self, tokens: torch.LongTensor) -> torch.LongTensor:
        """Node of each row after consuming `tokens` (rows, steps) from the root; -1 once off the trie."""
        node = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        for depth in range(tokens.shape[1]):  # at most L + 2 steps, each vectorized over rows
            node = self.step(depth, node, tokens[:, depth]) if depth < self.depth else torch.full_like(node, -1)
        return node


class SIDConstrainedLogitsProcessor(LogitsProcessor):
    """For `model.generate`: after the prompt, only continuations of catalogue SIDs (then EOS) get finite scores.

    Rows that have finished (EOS emitted) may only emit padding, which `generate` appends to finished rows.
    Works with left padding and any prompt length: `prompt_length` is the padded prompt width.
    """

    def __init__(self, trie: SIDTrie, *, prompt_length: int, eos_token_id: int, pad_token_id: int):
        self.trie = trie
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        node = self.trie.walk(generated)
        mask = self.trie.allowed_mask(generated.shape[1], node)
        if generated.shape[1]:
            finished = (generated == self.eos_token_id).any(dim=1)
            mask[finished] = False
            mask[finished, self.pad_token_id] = True
        return scores.masked_fill(~mask.to(scores.device), float("-inf"))
