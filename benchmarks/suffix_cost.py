"""What per-item suffix tokens cost in SFT, side by side with collision suffixes, and where the time goes.

One SFT epoch over the same training sequences of full Amazon Beauty with the SID map's collision suffixes and with
`suffix="item"` (one more vocabulary row per item), each with TRL's full-vocabulary loss and with the catalogue
softmax (`sid_softmax="catalogue"`), same backbone and seed. The profile gives each run's time inside TRL's fused
LM-head log-prob kernel (`trl/kernels/chunked_logprob.py`, cumulative; the catalogue softmax does not use it).

Run: `.venv/bin/python benchmarks/suffix_cost.py --sids runs/beauty/sids-ours-seed42.json [--users 2560] [--threads 2]`
(`--sids`: a saved `SemanticIDMap` of the full catalogue, e.g. one `beauty_quality.py` cached).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

import torch

from deepinterestgr.data import prepare
from deepinterestgr.recommender.backbone import BackboneConfig
from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
from deepinterestgr.sid import SemanticIDMap

LM_HEAD_KERNEL = "chunked_logprob.py"  # TRL's fused LM head + log-softmax (forward and backward tiles)


def head_seconds(profile: cProfile.Profile) -> float:
    """Cumulative seconds inside TRL's chunked log-prob autograd function (forward + backward)."""
    stats = pstats.Stats(profile).stats
    return sum(
        cumulative
        for (path, _, name), (_, _, _, cumulative, _) in stats.items()
        if path.endswith(LM_HEAD_KERNEL) and name in ("forward", "backward")
    )


def epoch_parser(doc: str, *, threads: int) -> argparse.ArgumentParser:
    """The options of a one-SFT-epoch benchmark on full Beauty: the data, a saved SID map, how many sequences."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--sids", type=Path, required=True, help="a saved SemanticIDMap of the full catalogue")
    parser.add_argument("--users", type=int, default=2560, help="training sequences in the epoch")
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    return parser


def main() -> None:
    args = epoch_parser(__doc__, threads=2).parse_args()
    torch.set_num_threads(args.threads)
    data = prepare("p5", args.beauty, max_history=20)
    train = data.splits["train"]["item_ids"][: args.users]
    collision = SemanticIDMap.load(args.sids)
    maps = {
        "collision": collision,
        "item": SemanticIDMap.from_codes(
            collision.item_ids, collision.codes, codebook_size=collision.codebook_size, suffix="item"
        ),
    }
    sft = RecommenderSFTArguments(
        backbone=BackboneConfig(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256, dropout=0.1),
        tasks={"sequence": 1.0}, max_history=20, epochs=1, batch_size=64, save_steps=10**9, logging_steps=10**6,
        seed=0,
    )  # fmt: skip
    rows = {}
    for kind, softmax in (
        ("collision", "vocabulary"),
        ("item", "vocabulary"),
        ("item", "catalogue"),
        ("collision", "catalogue"),
    ):
        sft.sid_softmax = softmax
        with tempfile.TemporaryDirectory() as out:
            profile, start = cProfile.Profile(), time.perf_counter()
            profile.enable()
            result = train_recommender(train, data.items, maps[kind], sft, out)
            profile.disable()
            seconds = time.perf_counter() - start
        rows[kind, softmax] = {
            "vocabulary": len(result.recommender.tokenizer),
            "parameters": sum(p.numel() for p in result.recommender.model.parameters()),
            "epoch_seconds": round(seconds, 1),
            "lm_head_seconds": round(head_seconds(profile), 1),
        }
        print(json.dumps({"suffix": kind, "sid_softmax": softmax, **rows[kind, softmax]}), flush=True)
    base = rows["collision", "vocabulary"]["epoch_seconds"]
    ratios = {f"{kind}+{softmax}": round(row["epoch_seconds"] / base, 2) for (kind, softmax), row in rows.items()}
    print(json.dumps({"over_collision_vocabulary": ratios, "users": args.users, "threads": args.threads}))


if __name__ == "__main__":
    main()
