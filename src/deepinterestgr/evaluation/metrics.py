"""HR@K and NDCG@K for one held-out target per user, vectorized over users.

With a single relevant item the ideal DCG is 1, so NDCG@K is 1/log2(rank + 2) for a target at 0-based `rank` < K
and 0 otherwise; HR@K is 1 when the target is in the top K.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def target_ranks(ranked: Sequence[Sequence[Hashable]] | np.ndarray, targets: Sequence[Hashable]) -> np.ndarray:
    """0-based position of each target in its ranked list (first occurrence), -1 where it is absent.

    Lists may have different lengths and hold any hashable ids (str or int); ids are mapped to integers once so
    the comparison is one array operation.
    """
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists but {len(targets)} targets; pass one list per target")
    n = len(targets)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.fromiter((len(r) for r in ranked), dtype=np.int64, count=n)
    width = max(int(lengths.max()), 1)
    flat = [x for r in ranked for x in r]
    vocab: dict[Hashable, int] = {}
    flat_codes = np.fromiter((vocab.setdefault(x, len(vocab)) for x in flat), dtype=np.int64, count=len(flat))
    target_codes = np.fromiter((vocab.get(t, -2) for t in targets), dtype=np.int64, count=n)
    matrix = np.full((n, width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    matrix[rows, cols] = flat_codes
    hits = matrix == target_codes[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of users whose target is ranked in the top `k` (ranks from `target_ranks`)."""
    _check_k(k)
    ranks = np.asarray(ranks)
    return float(((ranks >= 0) & (ranks < k)).mean()) if ranks.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@`k` with one relevant item per user (ranks from `target_ranks`)."""
    _check_k(k)
    ranks = np.asarray(ranks)
    if not ranks.size:
        return 0.0
    inside = (ranks >= 0) & (ranks < k)
    gains = np.where(inside, 1.0 / np.log2(np.where(inside, ranks, 0) + 2.0), 0.0)
    return float(gains.mean())


def evaluate_rankings(
    ranked: Sequence[Sequence[Hashable]] | np.ndarray, targets: Sequence[Hashable], ks: Sequence[int] = (5, 10)
) -> dict[str, float]:
    """`{"HR@5": ..., "NDCG@5": ..., "HR@10": ..., "NDCG@10": ...}` for the given cut-offs."""
    ranks = target_ranks(ranked, targets)
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate_at_k(ranks, k)
        out[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
    return out
