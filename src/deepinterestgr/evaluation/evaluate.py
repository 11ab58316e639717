"""Full-ranking evaluation: constrained beam search over the whole catalogue, HR@K / NDCG@K, mean ± std."""

from __future__ import annotations

import time

import numpy as np
from datasets import Dataset

from deepinterestgr.evaluation.metrics import evaluate_rankings
from deepinterestgr.recommender.model import GenerativeRecommender


def evaluate_recommender(
    recommender: GenerativeRecommender,
    split: Dataset,
    *,
    ks: tuple[int, ...] = (5, 10),
    num_beams: int = 20,
    batch_size: int = 32,
    max_users: int | None = None,
    exclude_history: bool = False,
) -> dict[str, float]:
    """HR@K and NDCG@K of `recommender` on a `valid`/`test` split (columns `history`, `target`); `exclude_history`:
    rank only items outside each user's history (RecBole's full-ranking protocol masks them the same way)."""
    if max_users is not None:
        split = split.select(range(min(max_users, len(split))))
    started = time.perf_counter()
    out = recommender.search(
        split["history"], num_beams=num_beams, batch_size=batch_size, exclude_history=exclude_history
    )
    seconds = time.perf_counter() - started
    ids = np.asarray(recommender.sid_map.item_ids, dtype=object)
    ranked = [ids[row[row >= 0]].tolist() for row in out.items.numpy()]
    metrics = evaluate_rankings(ranked, split["target"], ks=ks)
    metrics.update(users=len(split), seconds=round(seconds, 2), users_per_second=round(len(split) / seconds, 1))
    return metrics


def summarize(runs: list[dict[str, float]], ks: tuple[int, ...] = (5, 10)) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each metric over runs (e.g. training seeds)."""
    names = [f"{m}@{k}" for k in ks for m in ("HR", "NDCG")]
    return {
        name: {
            "mean": float(np.mean([r[name] for r in runs])),
            "std": float(np.std([r[name] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
        }
        for name in names
    }


def markdown_table(summary: dict[str, dict[str, float]], *, label: str) -> str:
    """One-row markdown table `| label | HR@5 | NDCG@5 | ... |` with mean ± std."""
    header = "| model | " + " | ".join(summary) + " |"
    rule = "|---|" + "---|" * len(summary)
    row = f"| {label} | " + " | ".join(f"{v['mean']:.4f} ± {v['std']:.4f}" for v in summary.values()) + " |"
    return "\n".join([header, rule, row])
