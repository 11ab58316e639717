"""Quality of a set of semantic IDs: uniqueness, collisions, codebook utilization and perplexity per level."""

from __future__ import annotations

from collections import Counter

import numpy as np


def _group_sizes(codes: np.ndarray) -> np.ndarray:
    """For each row, how many rows share its exact code tuple."""
    rows = list(map(tuple, codes.tolist()))
    counts = Counter(rows)
    return np.fromiter((counts[r] for r in rows), dtype=np.int64, count=len(rows))


def sid_quality(codes: np.ndarray, *, codebook_size: int) -> dict:
    """Report on (n_items, L) codes before any collision suffix is added."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or not len(codes):
        raise ValueError(f"expected a non-empty (items, levels) array of codes, got shape {codes.shape}")
    sizes = _group_sizes(codes)
    report: dict = {
        "items": len(codes),
        "levels": codes.shape[1],
        "codebook_size": codebook_size,
        "unique_fraction": float((sizes == 1).mean()),
        "distinct_tuples": len(set(map(tuple, codes.tolist()))),
        "max_items_per_tuple": int(sizes.max()),
        "unique_fraction_by_prefix": [
            float((_group_sizes(codes[:, : n + 1]) == 1).mean()) for n in range(codes.shape[1])
        ],
        "utilization": [],
        "perplexity": [],
    }
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        report["utilization"].append(float((counts > 0).mean()))
        report["perplexity"].append(float(np.exp(-(p * np.log(p)).sum())))
    return report
