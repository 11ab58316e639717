"""What leaving each user's history items out of the beam search costs: the plain search against `exclude_history`,
side by side on the same users and the same model, alternating passes.

The exclusion adds one trie lookup per allowed (beam row, token) pair and step; this measures that against the
model's forwards. It also checks that no excluded result is a history item.

Run: `.venv/bin/python benchmarks/exclude_history_speed.py runs/beauty/ours-seed42-TAG/best [--users 1000]`
"""

from __future__ import annotations

import json
import time

import torch

from catalogue_search_speed import speed_parser
from deepinterestgr.data import prepare
from deepinterestgr.recommender.model import GenerativeRecommender


def main() -> None:
    args = speed_parser(__doc__.splitlines()[0], threads=1).parse_args()
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
