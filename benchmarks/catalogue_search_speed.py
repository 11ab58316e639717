"""Beam search of a catalogue-softmax recommender: projecting hidden states onto the columns each step reads, against
computing the whole vocabulary's logits first, side by side on the same users.

With per-item suffixes the vocabulary has a row per item, and the full-logit path computes all of them at every step
although a code step reads at most K + 1 columns. Both paths rank by the same catalogue-normalised scores, so the
script also checks that they return the same top-10 items.

Run: `.venv/bin/python benchmarks/catalogue_search_speed.py runs/beauty/ours-seed42-cat6-item/best [--users 1000]`
(a `GenerativeRecommender` folder trained with `sid_softmax: catalogue`, e.g. `beauty_quality.py`'s best/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinterestgr.data import prepare
from deepinterestgr.recommender import beam_search
from deepinterestgr.recommender.model import GenerativeRecommender


def speed_parser(description: str, *, threads: int) -> argparse.ArgumentParser:
    """The arguments of a side-by-side search timing on Beauty's valid users (shared by the search benchmarks)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--users", type=int, default=1000, help="valid users ranked by each variant")
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed passes per variant")
    return parser


def main() -> None:
    parser = speed_parser(__doc__.splitlines()[0], threads=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec = GenerativeRecommender.from_pretrained(args.checkpoint)
    if rec.sid_softmax != "catalogue":
        raise SystemExit(f"{args.checkpoint} was trained with sid_softmax={rec.sid_softmax!r}; pass a catalogue one")
    valid = prepare("p5", args.beauty, max_history=20).splits["valid"]
    histories = [list(h) for h in valid["history"][: args.users]]
    plain_head = beam_search.plain_output_head
    paths = {"columns": plain_head, "full_logits": lambda model: None}  # None: the model's own logits
    seconds, items = {name: [] for name in paths}, {}
    for _ in range(args.repeats):
        for name, head in paths.items():
            beam_search.plain_output_head = head
            try:
                start = time.perf_counter()
                out = rec.search(histories, num_beams=20)
                seconds[name].append(time.perf_counter() - start)
            finally:
                beam_search.plain_output_head = plain_head
            items[name] = out.items[:, :10]
    best = {name: min(times) for name, times in seconds.items()}
    same = (items["columns"] == items["full_logits"]).all(dim=1).float().mean().item()
    summary = {
        "checkpoint": str(args.checkpoint), "vocabulary": len(rec.tokenizer), "users": len(histories),
        "threads": args.threads, "users_per_second": {k: round(len(histories) / v, 1) for k, v in best.items()},
        "speedup": round(best["full_logits"] / best["columns"], 2), "same_top10": same,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
