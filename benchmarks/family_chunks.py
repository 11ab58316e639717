"""What cutting the catalogue softmax's per-item families into size-sorted chunks saves in SFT, side by side.

At a depth with a token per item (`suffix="item"`), the catalogue softmax gathers each target's family (the items
under its shared codes) from the output head, padded to a common width. `catalogue_loss.FAMILY_CHUNKS = 1` pads
every row of a batch to the largest family in it; the default sorts rows by family size and pads each chunk to its
own largest. Same data, backbone, seed and SIDs in each run; runs alternate and the best of `--repeats` is kept.
The training loss of each run is printed as well: the chunks only change the order of a sum.

Run: `.venv/bin/python benchmarks/family_chunks.py --sids runs/beauty/sids-ours-seed42.json [--users 2560]
[--threads 1] [--levels 1]` (`--sids`: a saved `SemanticIDMap` of the full catalogue, e.g. one
`beauty_quality.py` cached).
"""

from __future__ import annotations

import json
import tempfile
import time

import torch

from deepinterestgr.data import prepare
from deepinterestgr.recommender import catalogue_loss
from deepinterestgr.recommender.backbone import BackboneConfig
from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
from deepinterestgr.sid import SemanticIDMap
from suffix_cost import epoch_parser


def main() -> None:
    parser = epoch_parser(__doc__, threads=1)
    parser.add_argument("--levels", type=int, default=1, help="shared RQ-VAE levels kept before the per-item token")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per setting; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = prepare("p5", args.beauty, max_history=20)
    train = data.splits["train"]["item_ids"][: args.users]
    saved = SemanticIDMap.load(args.sids)
    sid_map = SemanticIDMap.from_codes(
        saved.item_ids, saved.codes[:, : args.levels], codebook_size=saved.codebook_size, suffix="item"
    )
    sft = RecommenderSFTArguments(
        backbone=BackboneConfig(
            hidden_size=args.hidden, num_layers=2, num_heads=4, intermediate_size=args.hidden, dropout=0.1
        ),
        tasks={"sequence": 1.0}, max_history=20, epochs=1, batch_size=128, weight_decay=0.0, hidden_dropout=0.5,
        save_steps=10**9, logging_steps=10**6, sid_softmax="catalogue", seed=0,
    )  # fmt: skip
    default, seconds = catalogue_loss.FAMILY_CHUNKS, {}
    try:
        for _ in range(args.repeats):
            for chunks in (1, default):
                catalogue_loss.FAMILY_CHUNKS = chunks
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    result = train_recommender(train, data.items, sid_map, sft, out)
                    took = time.perf_counter() - start
                seconds[chunks] = min(seconds.get(chunks, float("inf")), took)
                loss = next(log["train_loss"] for log in result.log_history if "train_loss" in log)
                print(json.dumps({"family_chunks": chunks, "epoch_seconds": round(took, 1), "loss": loss}))
    finally:
        catalogue_loss.FAMILY_CHUNKS = default
    summary = {
        "speedup": round(seconds[1] / seconds[default], 2),
        "best_seconds": {str(k): round(v, 1) for k, v in seconds.items()},
        "users": args.users, "hidden": args.hidden, "levels": args.levels, "threads": args.threads,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
