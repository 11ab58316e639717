"""Calibration on full Amazon Beauty: a SASRec-style item-ID transformer with full-softmax cross-entropy.

Why it is here: our generative recommender scores below TIGER's published Beauty figures. This baseline drops SIDs
and beam search (one softmax over all 12,101 item ids, as SASRec-CE) but keeps everything else ours: the same P5
files, leave-last-out splits and history cut, the same HR/NDCG code, the epoch chosen on the same fixed 2,000-user
valid subset, the test split ranked for every user. If it reaches the published SASRec-CE re-runs, our protocol
is sound and the gap is the generative model's; if it falls short by as much, the gap is the protocol or budget.

`--sids FILE` (a saved `SemanticIDMap`) makes every item vector the sum of its SID codes' vectors, in the input
and the tied output alike: the same item-level model with exactly the SID model's item parameterization. It tells
whether the gap lies in the SIDs themselves or in generating them token by token.

Run: `.venv/bin/python benchmarks/item_id_baseline.py --seed 42 [--sids runs/beauty/sids-ours-seed42.json]
[--minutes 90] [--out runs/beauty]`
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from beauty_quality import CHECKED_USERS, valid_order
from deepinterestgr.data import prepare
from deepinterestgr.evaluation.metrics import hit_rate_at_k, ndcg_at_k, target_ranks
from deepinterestgr.recommender.dropout import residual_dropout
from deepinterestgr.sid import SemanticIDMap

PAD = 0  # item index 0 is padding; items are 1..N


def right_padded(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) with rows left-aligned: under causal attention the padding after a row never reaches it."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids.to(device), (ids != PAD).long().to(device)


class SIDSumItems(nn.Module):
    """Item vectors as sums of their SID codes' vectors (one row per level and code, the suffix as a further
    level; padding and a missing suffix add the zero row)."""

    def __init__(self, sid_map: SemanticIDMap, item_ids: list[str], dim: int):
        super().__init__()
        row = {item: n for n, item in enumerate(sid_map.item_ids)}
        codes = sid_map.as_tensor()[[row[i] for i in item_ids]]  # (N, L + 1), suffix -1 where none
        levels, size = sid_map.num_levels, sid_map.codebook_size
        index = codes + torch.arange(levels + 1) * size
        none = levels * size + max(sid_map.suffix_size, 1)  # the zero row
        index[:, levels] = torch.where(codes[:, levels] >= 0, index[:, levels], none)
        self.register_buffer("index", torch.cat([torch.full((1, levels + 1), none), index]))  # row 0: PAD
        self.table = nn.Embedding(none + 1, dim, padding_idx=none)
        with torch.no_grad():  # Llama's initialisation (std 0.02), as the id model's item table gets
            self.table.weight.normal_(0.0, 0.02)
            self.table.weight[none] = 0.0

    def forward(self) -> torch.Tensor:
        """(N + 1, dim) item vectors, row 0 (padding) zero."""
        return self.table(self.index).sum(1)


def hidden_states(model, vectors: torch.Tensor | None, ids, mask, *, dropout: float = 0.0) -> torch.Tensor:
    """Last-layer states; `vectors`: the SID-sum item table (computed once per step), None for item-id rows."""
    if vectors is None:
        return model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    embeds = F.dropout(vectors[ids], dropout, training=model.training)  # the embedding dropout of the id model
    return model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


def item_logits(model, vectors: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    return model.lm_head(hidden) if vectors is None else hidden @ vectors.T


@torch.no_grad()
def evaluate(
    model, items: SIDSumItems | None, histories: list[list[int]], targets: list[int], device, *, batch: int = 256
) -> dict:
    """Full ranking: every item scored by the softmax at the history's last position, top 10 kept."""
    model.eval()
    vectors = None if items is None else items()
    top = []
    for start in range(0, len(histories), batch):
        rows = histories[start : start + batch]
        ids, mask = right_padded(rows, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = hidden_states(model, vectors, ids, mask)
            last = item_logits(model, vectors, hidden[torch.arange(len(rows), device=device), mask.sum(1) - 1]).float()
        last[:, PAD] = -torch.inf  # scores of the last position only: the full logits would be 20x the memory
        top.append(last.topk(10).indices.cpu().numpy())
    ranks = target_ranks(np.concatenate(top), targets)
    return {f"{m}@{k}": f(ranks, k) for k in (5, 10) for m, f in (("HR", hit_rate_at_k), ("NDCG", ndcg_at_k))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/beauty"))
    parser.add_argument("--max-history", type=int, default=20, help="items of history (ours uses 20)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.5, help="residual/embedding dropout (SASRec: 0.5)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--check-every", type=int, default=5, help="epochs between valid checks")
    parser.add_argument("--patience", type=int, default=6, help="valid checks without gain before stopping")
    parser.add_argument("--minutes", type=float, default=90.0, help="wall-clock budget for training")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--sids", type=Path, default=None, help="item vectors = sums of these SIDs' code vectors")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out / f"item-{'sid-sum' if args.sids else 'id'}-seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)

    data = prepare("p5", args.beauty, max_history=args.max_history)
    index = {item: i + 1 for i, item in enumerate(data.items["item_id"])}
    train = [[index[i] for i in s[-(args.max_history + 1) :]] for s in data.splits["train"]["item_ids"]]
    train = [s for s in train if len(s) >= 2]  # a lone item has no next item to learn from
    valid = valid_order(data.splits["valid"]).select(range(CHECKED_USERS))

    def encode(split) -> tuple[list[list[int]], list[int]]:
        return [[index[i] for i in h] for h in split["history"]], [index[t] for t in split["target"]]

    config = LlamaConfig(
        vocab_size=1 if args.sids else len(index) + 1, hidden_size=args.hidden, intermediate_size=args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=args.max_history + 1, tie_word_embeddings=True, pad_token_id=PAD,
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(device)
    items = None
    if args.sids:
        items = SIDSumItems(SemanticIDMap.load(args.sids), data.items["item_id"], args.hidden).to(device)
        model.add_module("sid_items", items)  # trained, counted and checkpointed with the model
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    deadline, t0 = time.time() + 60 * args.minutes, time.time()
    best, best_state, bad, log = -1.0, None, 0, []
    for epoch in tqdm(range(1, args.epochs + 1), desc="epochs", unit="epoch"):
        model.train()
        order = rng.permutation(len(train))
        with residual_dropout(model, args.dropout):
            for start in range(0, len(order), args.batch):
                ids, mask = right_padded([train[i] for i in order[start : start + args.batch]], device)
                labels = ids.masked_fill(mask == 0, -100)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    if items is None:
                        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                    else:
                        vectors = items()
                        hidden = hidden_states(model, vectors, ids, mask, dropout=args.dropout)
                        logits = item_logits(model, vectors, hidden[:, :-1]).float()
                        loss = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        late = time.time() > deadline
        if epoch % args.check_every and not late and epoch < args.epochs:
            continue
        metrics = evaluate(model, items, *encode(valid), device)
        log.append({"epoch": epoch, "minutes": round((time.time() - t0) / 60, 2), "loss": loss.item(), **metrics})
        tqdm.write(json.dumps(log[-1]))
        if metrics["NDCG@10"] > best:
            best, best_state, bad = metrics["NDCG@10"], copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= args.patience or late:
            break
    train_minutes = (time.time() - t0) / 60
    model.load_state_dict(best_state)
    test = evaluate(model, items, *encode(data.splits["test"]), device)
    summary = {
        "model": f"item-level causal transformer, full-softmax CE (SASRec-CE style), item vectors: "
        f"{'sums of SID code vectors' if args.sids else 'one per item id'}", "seed": args.seed,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "params": params,
        "train_minutes": round(train_minutes, 1), "args": {k: str(v) for k, v in vars(args).items()},
        "best_valid_ndcg10": best, "test": test, "valid_log": log,
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "valid_log"}, indent=2))


if __name__ == "__main__":
    main()
