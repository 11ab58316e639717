"""Collaborative item embeddings from training interactions: truncated SVD of the PPMI co-occurrence matrix.

Items with the same text get distinct vectors when they are bought in different company. Only the `train` split is
read, so nothing of the valid/test targets leaks into the codes. SciPy builds the sparse matrix and scikit-learn's
randomized SVD factorizes it (both well kept; no training loop of ours).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.decomposition import TruncatedSVD


def collaborative_embeddings(
    item_ids: Sequence[str],
    train_sequences: Sequence[Sequence[str]],
    *,
    dim: int = 128,
    window: int = 5,
    context_smoothing: float = 0.75,
    seed: int = 42,
) -> np.ndarray:
    """L2-normalised (n_items, dim) float32 vectors; items never seen in training get zeros.

    Co-occurrence counts pairs within `window` positions of each other in a user's training sequence (both
    directions), weighted by 1/distance; positive PMI (context counts raised to `context_smoothing`) keeps the
    informative pairs. The vectors are the left singular vectors without singular-value weighting: weighting by
    S lets the top components dominate and makes items of one buyer community near-identical (measured on
    Beauty: 707 same-text items with a >0.95-cosine twin at dim 64 with S, 158 at dim 128 without).
    """
    index = {item: n for n, item in enumerate(item_ids)}
    rows, cols, vals = [], [], []
    for seq in train_sequences:
        codes = [index[i] for i in seq if i in index]
        for pos, a in enumerate(codes):
            for dist in range(1, window + 1):
                if pos + dist >= len(codes):
                    break
                b = codes[pos + dist]
                if a != b:
                    rows += [a, b]
                    cols += [b, a]
                    vals += [1.0 / dist, 1.0 / dist]
    n = len(item_ids)
    counts = sparse.coo_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float64).tocsr()
    counts.sum_duplicates()
    out = np.zeros((n, dim), dtype=np.float32)
    if counts.nnz == 0:
        return out
    total = counts.sum()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    context = marginal**context_smoothing
    context = context / context.sum() * total
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (marginal[coo.row] * context[coo.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n))
    k = min(dim, max(1, min(ppmi.shape) - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed, algorithm="randomized", n_iter=7)
    vectors = svd.fit_transform(ppmi) / np.maximum(svd.singular_values_, 1e-12)  # U, not U * S
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out[:, :k] = np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0)
    return out
