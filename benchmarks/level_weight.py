"""Is the balance between a SID's first token and the rest off? Re-rank one search by alpha x first + rest.

Why it is here: with the catalogue softmax an item's score is log P(first code) + log P(rest | first code), the
exact likelihood the model was trained on. When the evaluated targets are rarer than the training targets (Beauty's
test split is), a different weight on the shared first code could rank them better. This diagnostic searches once
per user, keeps each returned item's per-token log-probabilities, and re-ranks the returned items for several
weights alpha on the first token. alpha = 1 is the recommender's own ranking. With a one-level SID the first token
is the cluster, and alpha only reorders items across clusters, so a search of `--beams` 50 returns enough items to
re-rank a top 10 (beam 20, 50 and 256 rank the same on the chosen checkpoints: see RESULTS).

Run: `.venv/bin/python benchmarks/level_weight.py runs/beauty/ours-seed42-sas256-d5/best [--split valid]
[--alphas 0.5 0.75 1 1.25 1.5] [--users N] [--threads 1]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deepinterestgr.data import prepare
from deepinterestgr.evaluation.metrics import evaluate_rankings
from deepinterestgr.recommender.model import GenerativeRecommender


def reranked(items: np.ndarray, token_logps: np.ndarray, alpha: float, k: int = 10) -> list[list[int]]:
    """Top-`k` catalogue rows per user by alpha x first-token log-prob + the rest (missing beams last)."""
    scores = alpha * token_logps[..., 0] + token_logps[..., 1:].sum(-1)
    scores = np.where(items >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(items, order, axis=1)
    return [row[row >= 0].tolist() for row in top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a GenerativeRecommender folder")
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5])
    parser.add_argument("--beams", type=int, default=50, help="items returned per user to re-rank")
    parser.add_argument("--users", type=int, default=None, help="first N users of the split (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = prepare("p5", args.beauty, max_history=20).splits[args.split]
    if args.users:
        split = split.select(range(min(args.users, len(split))))
    rec = GenerativeRecommender.from_pretrained(args.checkpoint)
    out = rec.search(split["history"], num_beams=args.beams)
    row = {item: n for n, item in enumerate(rec.sid_map.item_ids)}
    targets = [row[t] for t in split["target"]]
    items, logps = out.items.numpy(), out.token_logprobs.float().numpy()
    for alpha in args.alphas:
        metrics = {name: round(v, 4) for name, v in evaluate_rankings(reranked(items, logps, alpha), targets).items()}
        print(json.dumps({"split": args.split, "users": len(targets), "alpha": alpha, **metrics}), flush=True)


if __name__ == "__main__":
    main()
