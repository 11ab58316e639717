"""SID quality on the full Beauty data: embed (MiniLM on brand + category text), train the RQ-VAE, assign codes.

Compares text-only and text + collaborative embeddings, and LETTER's published Beauty SIDs (first 3 levels).
Run: `.venv/bin/python benchmarks/sid_beauty.py [--beauty ../shared/data/amazon/beauty] [--epochs 200]`
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deepinterestgr.data import prepare
from deepinterestgr.embedding.stage import embed_items
from deepinterestgr.sid import RQVAEConfig, RQVAETrainingArguments, sid_quality
from deepinterestgr.sid.quantize import quantize_items


def letter_report(path: Path) -> dict:
    sids = json.loads(path.read_text())
    codes = np.array([[int(t.split("_")[1].rstrip(">")) for t in sids[k][:3]] for k in sorted(sids, key=int)])
    return sid_quality(codes, codebook_size=256)


def row(name: str, report: dict, seconds: str) -> str:
    util = " / ".join(f"{u:.0%}" for u in report["utilization"])
    ppl = " / ".join(f"{p:.0f}" for p in report["perplexity"])
    return (
        f"| {name} | {report['unique_fraction']:.1%} | {report['max_items_per_tuple']} | {util} | {ppl} "
        f"| {report.get('suffix_size', '-')} | {seconds} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--epochs", type=int, default=RQVAETrainingArguments.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, cuda={torch.cuda.is_available()}")

    data = prepare("p5", args.beauty)
    train = data.splits["train"]["item_ids"]
    lines = []
    for mode, seed in [(mode, seed) for mode in ("off", "on") for seed in args.seeds]:
        t0 = time.perf_counter()
        items = embed_items(data.items, train, collaborative=mode, show_progress=False)
        t_embed = time.perf_counter() - t0
        dim = len(items[0]["embedding"])
        t0 = time.perf_counter()
        train_args = RQVAETrainingArguments(epochs=args.epochs, seed=seed, show_progress=False)
        items, tokenizer = quantize_items(items, config=RQVAEConfig(input_dim=dim), args=train_args)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        assigned = tokenizer.encode(np.asarray(items["embedding"], dtype=np.float32))
        t_assign = time.perf_counter() - t0
        assert (assigned == tokenizer.sid_map.codes).all()
        steps = args.epochs * -(-len(items) // train_args.batch_size)
        name = f"{'text only' if mode == 'off' else 'text + collaborative'}, seed {seed}"
        seconds = f"{t_embed:.1f} + {t_train:.1f} + {t_assign:.2f} = {t_embed + t_train + t_assign:.1f}"
        lines.append(row(name, tokenizer.report, seconds))
        recon = tokenizer.report["reconstruction_loss"]
        print(f"{name}: {steps} steps, {1000 * t_train / steps:.1f} ms/step; recon {recon:.4f}")
    letter = args.beauty / "letter_sids.json"
    if letter.is_file():
        lines.append(row("LETTER published (first 3 levels)", letter_report(letter), "-"))
    print(
        "| SIDs | unique at 3 levels | max items per tuple | utilization L1/L2/L3 | perplexity L1/L2/L3 "
        "| suffix codes | embed + train + assign s |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
