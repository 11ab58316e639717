"""Where a Beauty checkpoint loses quality: memorization, valid/test gap, beam width (one checkpoint, user subsets).

Rows:
- `train-last`: each training sequence's own last item from the items before it (seen in training), `--users`
  users outside the checked subset;
- `valid-checked`: the fixed 2,000-user valid subset `beauty_quality.py` chooses epochs on, at beam 20, 50, 100 and
  256 (every cluster of a one-level 256-code SID, so an exhaustive search there);
- `valid-checked history share`: on those users, how often the top 1 / top 5 / top 10 hold history items;
- `valid-all` / `test-all`: valid and test over every user (one ranking each, beam 20); `... history excluded`:
  the same with each user's history items left out of the ranking (`exclude_history`);
- `test-without-valid-item`: the test targets ranked from the valid histories (the valid item left out): if the
  model leaned on having seen the training sequence exactly, this would beat `test-all`; if the test targets are
  just harder, it falls below it.

Run: `.venv/bin/python benchmarks/beauty_diagnostics.py runs/beauty/ours-seed42-long/best [--users 2000]
[--rows test-all test-without-valid-item]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from beauty_quality import CHECKED_USERS, valid_order
from deepinterestgr.data import prepare
from deepinterestgr.evaluation.evaluate import evaluate_recommender
from deepinterestgr.recommender.model import GenerativeRecommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a GenerativeRecommender folder (beauty_quality.py's best/)")
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--rows", nargs="*", default=None, help="only these rows (names as printed; default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepare("p5", args.beauty, max_history=20)
    rec = GenerativeRecommender.from_pretrained(args.checkpoint, device="cuda" if torch.cuda.is_available() else None)
    valid, test = data.splits["valid"], data.splits["test"]
    ordered = valid_order(valid)

    def train_last() -> Dataset:
        other = set(ordered["user_id"][CHECKED_USERS : CHECKED_USERS + args.users])  # users for train-last
        train = data.splits["train"].filter(lambda r: r["user_id"] in other and len(r["item_ids"]) >= 2)
        history = [s[:-1][-20:] for s in train["item_ids"]]
        return Dataset.from_dict(
            {"user_id": train["user_id"], "history": history, "target": [s[-1] for s in train["item_ids"]]}
        )

    if valid["user_id"] != test["user_id"]:  # test-without-valid-item pairs valid histories with test targets
        parser.error("the valid and test splits list different users; this diagnostic needs one row per user in both")
    subset = ordered.select(range(CHECKED_USERS))

    def history_share(split: Dataset) -> dict:
        """How often the plain search ranks the user's own history items (never a target in this data)."""
        out = rec.search(split["history"], num_beams=20)
        ids = np.asarray(rec.sid_map.item_ids, dtype=object)
        ranked = [ids[row[row >= 0]].tolist() for row in out.items.numpy()]
        seen = [[item in set(h) for item in r[:10]] for r, h in zip(ranked, split["history"], strict=True)]
        return {
            "top1 in history": float(np.mean([s[0] for s in seen])),
            "any of top5 in history": float(np.mean([any(s[:5]) for s in seen])),
            "history items in top10": float(np.mean([sum(s) for s in seen])),
            "users": len(split),
        }

    plan = {
        "train-last": lambda: evaluate_recommender(rec, train_last()),
        **{
            f"valid-checked beam {b}": (lambda b=b: evaluate_recommender(rec, subset, num_beams=b))
            for b in (20, 50, 100, 256)
        },
        "valid-checked history share": lambda: history_share(subset),
        "valid-all": lambda: evaluate_recommender(rec, valid),
        "test-all": lambda: evaluate_recommender(rec, test),
        "valid-all history excluded": lambda: evaluate_recommender(rec, valid, exclude_history=True),
        "test-all history excluded": lambda: evaluate_recommender(rec, test, exclude_history=True),
        "test-without-valid-item": lambda: evaluate_recommender(
            rec, Dataset.from_dict({"history": valid["history"], "target": test["target"]})
        ),
    }
    unknown = set(args.rows or []) - set(plan)
    if unknown:
        parser.error(f"unknown row(s) {sorted(unknown)}; choose from {list(plan)}")
    rows = {name: run() for name, run in plan.items() if args.rows is None or name in args.rows}
    for name, metrics in rows.items():
        print(json.dumps({"row": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}))


if __name__ == "__main__":
    main()
