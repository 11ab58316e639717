"""What reading each per-item family of the output head once per batch saves in SFT, side by side with gathering a
copy of it for every target row.

At a depth with a token per item (`suffix="item"`), the catalogue softmax scores each target against its family
(the items under its shared codes). The library (`catalogue_loss._family_nll`) groups the rows by family and does
one matmul per family. The two baselines are the earlier ways, kept here only to be timed: every row gathers its
own copy of its family from the head into one (rows, family, H) tensor padded to the largest family in the batch
(`padded`), or in 4 chunks of rows sorted by family size, each padded to its own largest (`chunked`). Same data,
backbone, seed and SIDs in each run; runs alternate and the best of `--repeats` is kept. The training loss of each
run is printed as well: the three only change the order of a sum.

Run: `.venv/bin/python benchmarks/family_gather.py --sids runs/beauty/sids-ours-seed42.json [--users 2560]
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


def per_row_family_nll(chunks: int):
    """The baseline: each row gathers its own padded copy of its family; rows sorted by family size into `chunks`."""

    def family_nll(h, node, token, weight, bias, trie, depth):
        start = trie.child_start[depth][node]
        count = trie.child_end[depth][node] - start
        total = h.new_zeros((), dtype=torch.float32)
        last = len(trie.keys[depth]) - 1
        for part in count.argsort().tensor_split(min(chunks, len(count))):
            offset = torch.arange(int(count[part].max()), device=node.device)
            valid = offset < count[part, None]
            family = trie.keys[depth][(start[part, None] + offset).clamp(max=last)] % trie.vocab_size
            logits = torch.einsum("nh,nch->nc", h[part], weight[family])
            if bias is not None:
                logits = logits + bias[family]
            logits = logits.float().masked_fill(~valid, float("-inf"))
            chosen = ((family == token[part, None]) & valid).int().argmax(dim=1)
            total = total - logits.log_softmax(-1).gather(1, chosen[:, None]).sum()
        return total

    return family_nll


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
    variants = {
        "padded": per_row_family_nll(1), "chunked": per_row_family_nll(4), "grouped": catalogue_loss._family_nll
    }  # fmt: skip
    library, seconds = catalogue_loss._family_nll, {}
    try:
        for _ in range(args.repeats):
            for name, family_nll in variants.items():
                catalogue_loss._family_nll = family_nll
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    result = train_recommender(train, data.items, sid_map, sft, out)
                    took = time.perf_counter() - start
                seconds[name] = min(seconds.get(name, float("inf")), took)
                loss = next(log["train_loss"] for log in result.log_history if "train_loss" in log)
                print(json.dumps({"family_gather": name, "epoch_seconds": round(took, 1), "loss": loss}))
    finally:
        catalogue_loss._family_nll = library
    summary = {
        "grouped_vs_padded": round(seconds["padded"] / seconds["grouped"], 2),
        "grouped_vs_chunked": round(seconds["chunked"] / seconds["grouped"], 2),
        "best_seconds": {str(k): round(v, 1) for k, v in seconds.items()},
        "users": args.users, "hidden": args.hidden, "levels": args.levels, "threads": args.threads,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
