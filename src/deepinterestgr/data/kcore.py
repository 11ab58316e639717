"""Iterative k-core filtering of user-item interactions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from datasets import Dataset

from deepinterestgr.data.schema import build_sequences


def k_core(pairs: Sequence[tuple[str, str]], k: int) -> list[bool]:
    """Mask of the interactions that survive iterative k-core filtering.

    Repeats until every remaining user and item has at least `k` interactions: dropping a sparse item can make a
    user sparse and the other way round, so one pass is not enough.
    """
    if k < 1:
        raise ValueError(f"k-core threshold must be >= 1, got {k}")
    keep = [True] * len(pairs)
    while True:
        users = Counter(u for (u, _), kept in zip(pairs, keep, strict=True) if kept)
        items = Counter(i for (_, i), kept in zip(pairs, keep, strict=True) if kept)
        changed = False
        for n, (u, i) in enumerate(pairs):
            if keep[n] and (users[u] < k or items[i] < k):
                keep[n] = False
                changed = True
        if not changed:
            return keep


def k_core_tables(items: Dataset, sequences: Dataset, k: int) -> tuple[Dataset, Dataset]:
    """Apply `k_core` to already loaded tables; items left without interactions leave the catalogue."""
    pairs = [(u, i) for u, seq in zip(sequences["user_id"], sequences["item_ids"], strict=True) for i in seq]
    keep = iter(k_core(pairs, k))
    users, item_ids, timestamps = [], [], []
    for user, seq, times in zip(sequences["user_id"], sequences["item_ids"], sequences["timestamps"], strict=True):
        mask = [next(keep) for _ in seq]
        kept = [i for i, m in zip(seq, mask, strict=True) if m]
        if kept:
            users.append(user)
            item_ids.append(kept)
            timestamps.append(None if times is None else [t for t, m in zip(times, mask, strict=True) if m])
    used = {i for seq in item_ids for i in seq}
    items = items.filter(lambda row: row["item_id"] in used)
    return items, build_sequences(users, item_ids, timestamps)
