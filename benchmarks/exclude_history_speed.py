"""What leaving each user's history items out of the beam search costs: the plain search against `exclude_history`,
side by side on the same users and the same model, alternating passes.

The exclusion adds one trie lookup per allowed (beam row, token) pair and step; this measures that against the
model's forwards. It also checks that no excluded result is a history item.

Run: `.venv/bin/python benchmarks/exclude_history_speed.py runs/beauty/ours-seed42-TAG/best [--users 1000]`
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinterestgr.data import prepare
from deepinterestgr.recommender.model import GenerativeRecommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--users", type=int, default=1000, help="valid users ranked by each mode")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed passes per mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec = GenerativeRecommender.from_pretrained(args.checkpoint)
    valid = prepare("p5", args.beauty, max_history=20).splits["valid"]
    histories = [list(h) for h in valid["history"][: args.users]]
    seconds, items = {"plain": [], "exclude_history": []}, {}
    for _ in range(args.repeats):
        for mode in seconds:
            start = time.perf_counter()
            out = rec.search(histories, num_beams=20, exclude_history=mode == "exclude_history")
            seconds[mode].append(time.perf_counter() - start)
            items[mode] = out.items
    ids = rec.sid_map.item_ids
    rows = zip(items["exclude_history"].tolist(), histories, strict=True)
    leaked = sum(ids[i] in set(h) for row, h in rows for i in row if i >= 0)
    best = {mode: min(times) for mode, times in seconds.items()}
    summary = {
        "checkpoint": str(args.checkpoint), "users": len(histories), "threads": args.threads,
        "users_per_second": {k: round(len(histories) / v, 1) for k, v in best.items()},
        "cost": round(best["exclude_history"] / best["plain"], 3), "history_items_returned": leaked,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
