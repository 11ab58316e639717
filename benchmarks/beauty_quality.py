"""Recommendation quality on the full Amazon Beauty data (test split, full ranking), trained on this machine.

Pipeline: prepare (P5 files) -> embed (MiniLM brand+category text + train co-occurrence) -> RQ-VAE SIDs (or
LETTER's published SIDs with --letter-sids) -> SFT of a small Llama from scratch on whole SID sequences ->
constrained beam search (beam 20). The epoch is chosen on a fixed 2,000-user subset of the valid split (never
on test); the test split is then ranked for every user.

Run: `.venv/bin/python benchmarks/beauty_quality.py --seed 42 [--letter-sids] [--minutes 90] [--out runs/beauty]`
(see --help for the model and schedule knobs; SIDs are cached per seed under --out, so variants reuse them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import TrainerCallback

from deepinterestgr.data import prepare
from deepinterestgr.embedding.stage import embed_items
from deepinterestgr.evaluation.evaluate import evaluate_recommender
from deepinterestgr.recommender.arguments import LOSS_MEAN, PROMPT_ATTENTION, SID_SOFTMAX
from deepinterestgr.recommender.backbone import BackboneConfig
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
from deepinterestgr.sid import RQVAEConfig, RQVAETrainingArguments, SemanticIDMap, sid_quality
from deepinterestgr.sid.quantize import quantize_items
from deepinterestgr.stages import join_mined_columns


class ValidCheck(TrainerCallback):
    """At each epoch end: valid NDCG@10 on a fixed user subset; keep the best weights; stop past the budget."""

    def __init__(
        self, sid_map, valid, out: Path, *, max_history: int, deadline: float, patience: int = 3, every: int = 1,
        attention: str = "causal", sid_softmax: str = "vocabulary",
    ):  # fmt: skip
        self.sid_map, self.valid, self.out, self.attention = sid_map, valid, out, attention
        self.sid_softmax = sid_softmax
        self.max_history, self.deadline, self.patience, self.every = max_history, deadline, patience, every
        self.best, self.bad, self.log = -1.0, 0, []

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        last = state.epoch >= args.num_train_epochs or time.time() > self.deadline
        if round(state.epoch) % self.every and not last:
            return control  # checks cost ~1/3 of an epoch: a long schedule checks every few epochs
        rec = GenerativeRecommender(
            model, processing_class, self.sid_map, max_history=self.max_history, prompt_attention=self.attention,
            sid_softmax=self.sid_softmax,
        )  # fmt: skip
        metrics = evaluate_recommender(rec, self.valid)
        model.train()
        self.log.append({"epoch": state.epoch, "minutes": (time.time() - START) / 60, **metrics})
        print(json.dumps(self.log[-1]), flush=True)
        if metrics["NDCG@10"] > self.best:
            self.best, self.bad = metrics["NDCG@10"], 0
            rec.save_pretrained(self.out / "best")
            model.train()
        else:
            self.bad += 1
        if self.bad >= self.patience or time.time() > self.deadline:
            control.should_training_stop = True
        return control


START = time.time()
CHECKED_USERS = 2000  # valid users the epoch is chosen on: a fixed subset, since a full valid pass costs minutes


def valid_order(valid: Dataset) -> Dataset:
    """The valid split in the fixed order whose first `CHECKED_USERS` rows choose the epoch (shared by the
    Beauty benchmarks so their choices and diagnostics see the same users)."""
    return valid.shuffle(seed=0)


def letter_map(path: Path, item_ids: list[str], asins_by_letter_id: dict[int, str]) -> SemanticIDMap:
    sids = json.loads(path.read_text())
    codes = {asins_by_letter_id[int(k)]: [int(t.split("_")[1].rstrip(">")) for t in v[:3]] for k, v in sids.items()}
    return SemanticIDMap.from_codes(item_ids, np.array([codes[i] for i in item_ids]), codebook_size=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--minutes", type=float, default=90.0, help="wall-clock budget for SFT")
    parser.add_argument("--epochs", type=float, default=40)
    parser.add_argument("--letter-sids", action="store_true", help="use LETTER's published SIDs (first 3 levels)")
    parser.add_argument("--out", type=Path, default=Path("runs/beauty"))
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=None, help="MLP width (default: 2 x hidden)")
    parser.add_argument("--dropout", type=float, default=0.0, help="residual/embedding dropout while training")
    parser.add_argument("--attention-dropout", type=float, default=0.1, help="dropout of the attention weights")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--task", default="sequence", choices=["sequence", "next_item"], help="SFT task form")
    parser.add_argument("--prompt-attention", default="causal", choices=PROMPT_ATTENTION)
    parser.add_argument(
        "--sid-softmax",
        default="vocabulary",
        choices=SID_SOFTMAX,
        help="what SID tokens are normalised over (default: vocabulary, as the runs recorded before the option)",
    )
    parser.add_argument(
        "--item-suffix", action="store_true", help="every item gets its own last-level token (SID + item id)"
    )
    parser.add_argument("--levels", type=int, default=None, help="keep only the first K RQ-VAE levels of each SID")
    parser.add_argument(
        "--rqvae", default=None, metavar="LxC", help="train an RQ-VAE of L levels x C codes (default: 3x256)"
    )
    parser.add_argument("--patience", type=int, default=3, help="valid checks without gain before stopping")
    parser.add_argument("--check-every", type=int, default=1, help="epochs between valid checks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tag", default="", help="suffix of the run folder")
    parser.add_argument("--random-batches", action="store_true", help="no length-grouped batching")
    parser.add_argument(
        "--loss-mean",
        default="batch",
        choices=LOSS_MEAN,
        help="sft.loss_mean (default: batch, as the runs recorded before the option; the library's default is dataset)",
    )
    parser.add_argument("--mined", type=Path, default=None, help="mined + judged items (mine_beauty.py's parquet)")
    parser.add_argument("--descriptors", default="positive", help="all | positive: descriptors in our SIDs' text")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    enriched = f"+{args.descriptors}" if args.mined else ""  # the descriptors our SIDs were built with
    shape = f"-rq{args.rqvae}" if args.rqvae else ""
    name = f"{'letter' if args.letter_sids else 'ours' + enriched + shape}-seed{args.seed}"
    out = args.out / (name + (f"-{args.tag}" if args.tag else ""))
    out.mkdir(parents=True, exist_ok=True)

    data = prepare("p5", args.beauty, max_history=20)
    train = data.splits["train"]["item_ids"]
    t0 = time.time()
    if args.letter_sids:
        attrs = json.loads((args.beauty / "item_attributes.json").read_text())
        by_letter = {v["letter_item_id"]: v["asin"] for v in attrs.values()}
        sid_map = letter_map(args.beauty / "letter_sids.json", data.items["item_id"], by_letter)
        items = data.items
    elif (args.out / f"sids-{name}.json").is_file():
        sid_map, items = SemanticIDMap.load(args.out / f"sids-{name}.json"), data.items
    else:
        items = join_mined_columns(data.items, args.mined) if args.mined else data.items
        embedded = embed_items(
            items, train, descriptors=args.descriptors if args.mined else "none", show_progress=False
        )
        levels, codes = map(int, args.rqvae.split("x")) if args.rqvae else (3, 256)
        config = RQVAEConfig(input_dim=len(embedded[0]["embedding"]), num_levels=levels, codebook_size=codes)
        items, tokenizer = quantize_items(
            embedded, config=config, args=RQVAETrainingArguments(seed=args.seed, show_progress=False)
        )
        sid_map = tokenizer.sid_map
        sid_map.save(args.out / f"sids-{name}.json")
    sid_seconds = time.time() - t0
    if args.levels:  # residual levels are coarse to fine, so the first K levels are a coarser SID of the same RQ-VAE
        sid_map = SemanticIDMap.from_codes(
            sid_map.item_ids, sid_map.codes[:, : args.levels], codebook_size=sid_map.codebook_size
        )
    if args.item_suffix:  # the suffix level becomes a per-item token: free per-item vectors after the shared codes
        sid_map = SemanticIDMap.from_codes(
            sid_map.item_ids, sid_map.codes, codebook_size=sid_map.codebook_size, suffix="item"
        )
    report = sid_quality(sid_map.codes, codebook_size=sid_map.codebook_size)
    print(
        f"SIDs: {report['unique_fraction']:.1%} unique, suffix {sid_map.suffix_size}, {sid_seconds:.0f} s", flush=True
    )

    valid = valid_order(data.splits["valid"]).select(range(CHECKED_USERS))
    backbone = BackboneConfig(
        hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
        intermediate_size=args.mlp or 2 * args.hidden, dropout=args.attention_dropout,
    )  # fmt: skip
    sft_args = RecommenderSFTArguments(
        backbone=backbone, tasks={args.task: 1.0}, max_history=20, epochs=args.epochs, learning_rate=args.lr,
        batch_size=args.batch, weight_decay=args.weight_decay, hidden_dropout=args.dropout, save_steps=10**9,
        label_smoothing=args.label_smoothing, prompt_attention=args.prompt_attention,
        group_by_length=not args.random_batches, sid_softmax=args.sid_softmax, loss_mean=args.loss_mean,
        logging_steps=100, seed=args.seed,
    )  # fmt: skip
    check = ValidCheck(
        sid_map, valid, out, max_history=20, deadline=time.time() + 60 * args.minutes, patience=args.patience,
        every=args.check_every, attention=args.prompt_attention, sid_softmax=args.sid_softmax,
    )  # fmt: skip
    t0 = time.time()
    result = train_recommender(train, items, sid_map, sft_args, out / "work", callbacks=[check])
    train_minutes = (time.time() - t0) / 60
    params = sum(p.numel() for p in result.recommender.model.parameters())
    cuda = torch.cuda.is_available()
    best = GenerativeRecommender.from_pretrained(out / "best", device="cuda" if cuda else None)
    test = evaluate_recommender(best, data.splits["test"])
    summary = {
        "sids": "LETTER published" if args.letter_sids else f"ours (text{enriched} + collaborative RQ-VAE)",
        "seed": args.seed, "device": torch.cuda.get_device_name() if cuda else "cpu", "params": params,
        "train_minutes": round(train_minutes, 1), "valid_log": check.log,
        "args": {k: str(v) for k, v in vars(args).items()},
        "best_valid_ndcg10": check.best, "test": test, "sid_unique": report["unique_fraction"],
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "valid_log"}, indent=2))


if __name__ == "__main__":
    main()
