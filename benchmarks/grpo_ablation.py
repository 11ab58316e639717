"""GRPO reward ablation: the same SFT checkpoint, then each reward set, evaluated by full-ranking beam search.

(a) no RL; (b) exact + valid + prefix; (c) + rank-aware; (d) + ungated quality bonus; (e) (c) + QARM gated bonus;
(f) (e) + interest-aware. (d)-(f) need judged items (`quality`, `descriptor_labels`) and (f) user interests,
which `deepinterestgr mine` / `judge` produce (the bundled sample ships both: `mined_items.parquet` and
`user_interests.parquet`); variants whose inputs are missing are reported as skipped.

Run: `.venv/bin/python benchmarks/grpo_ablation.py --config configs/quickstart.yaml [--variants a b c]
[--mined src/deepinterestgr/data/samples/beauty_2k/mined_items.parquet] [--user-interests PARQUET]`
(the config's pipeline runs first up to SFT where its outputs are missing; its `grpo` section gives the settings).
On full Beauty, from a `benchmarks/beauty_quality.py` checkpoint: `--sft runs/beauty/<run>/best --data
../shared/data/amazon/beauty --mined benchmarks/data/beauty_mined.parquet --variants a b c d e`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from deepinterestgr.artifacts import load_items
from deepinterestgr.config import PipelineConfig
from deepinterestgr.data import prepare
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.errors import DataError
from deepinterestgr.evaluation.evaluate import evaluate_recommender
from deepinterestgr.pipeline import run_pipeline
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.rl.grpo import train_grpo
from deepinterestgr.stages import join_mined_columns, load_user_interests

VARIANTS = {
    "a": None,
    "b": ["exact", "valid", "prefix"],
    "c": ["exact", "valid", "prefix", "rank"],
    "d": ["exact", "valid", "prefix", "rank", "ungated"],
    "e": ["exact", "valid", "prefix", "rank", "qarm"],
    "f": ["exact", "valid", "prefix", "rank", "qarm", "interest"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/quickstart.yaml"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--max-users", type=int, default=None, help="evaluate only the first N users")
    parser.add_argument(
        "--mined", type=Path, default=None,
        help="mined + judged items (parquet, e.g. the bundled sample's) for the quality rewards, joined to the run's "
        "items without rebuilding its SIDs, so every variant starts from the same SFT checkpoint",
    )  # fmt: skip
    parser.add_argument(
        "--user-interests", type=Path, default=None,
        help="mined user interests (parquet: user_id, interests) for (f); default: the bundled sample's",
    )  # fmt: skip
    parser.add_argument(
        "--sft", type=Path, default=None,
        help="start from this SFT recommender folder instead of the config's run (e.g. the best/ folder of a "
        "benchmarks/beauty_quality.py run); its data comes from --data, the GRPO settings still from --config",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="GRPO seeds (prompt sampling, training)")
    parser.add_argument("--data", type=Path, default=None, help="with --sft: the P5 folder it was trained on")
    args = parser.parse_args()
    config = PipelineConfig.from_yaml(args.config)
    if args.sft:
        if args.data is None:
            parser.error("--sft needs --data, the P5 folder of the data it was trained on")
        sft_dir = args.sft
        data = prepare("p5", args.data, max_history=GenerativeRecommender.from_pretrained(sft_dir).max_history)
        items = data.items
    else:
        out_dir = Path(config.output_dir)
        sft_dir = out_dir / "sft"
        if not (sft_dir / "stage.json").is_file():
            run_pipeline(config.model_copy(update={"grpo": replace(config.grpo, enabled=False)}))
        data = PreparedData.load_from_disk(out_dir / "prepared")
        items = load_items(out_dir / "sid", needs=("sid",))
    if args.mined:
        items = join_mined_columns(items, args.mined)
    rows = []
    for name in args.variants:
        rewards = VARIANTS[name]
        try:  # read once per variant, not per seed
            interests = None
            if rewards is not None and "interest" in rewards:
                users = load_user_interests(data.splits["train"], args.user_interests)
                interests = dict(zip(users["user_id"], users["interests"], strict=True))
        except DataError as err:
            print(f"({name}) skipped: {err}", flush=True)
            rows.append({"variant": name, "rewards": rewards, "skipped": str(err)})
            continue
        for seed in [None] if rewards is None else args.seeds:  # (a) does not train: one evaluation
            started = time.perf_counter()
            if rewards is None:
                model = GenerativeRecommender.from_pretrained(sft_dir)
            else:
                grpo_args = replace(config.grpo, rewards=rewards, seed=seed)
                work = args.out / (name if len(args.seeds) == 1 else f"{name}-seed{seed}")
                try:
                    model = train_grpo(
                        sft_dir, data.splits["train"], items, grpo_args, work, user_interests=interests
                    ).recommender
                except DataError as err:
                    print(f"({name}) skipped: {err}", flush=True)
                    rows.append({"variant": name, "rewards": rewards, "skipped": str(err)})
                    break
            seconds = time.perf_counter() - started
            row = {
                "variant": name,
                "rewards": rewards or "none (SFT)",
                "seed": seed,
                "train_seconds": round(seconds, 1),
            }
            for split in ("valid", "test"):
                metrics = evaluate_recommender(model, data.splits[split], max_users=args.max_users)
                row[split] = {k: v for k, v in metrics.items() if "@" in k}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    """One line per variant: mean (± std over GRPO seeds, when there are several) of each metric."""
    columns = [("valid", "HR@10"), ("valid", "NDCG@10"), ("test", "HR@5"), ("test", "NDCG@5"), ("test", "HR@10"),
               ("test", "NDCG@10")]  # fmt: skip
    lines = [
        "| variant | rewards | seeds | GRPO s | " + " | ".join(f"{split} {m}" for split, m in columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for name in dict.fromkeys(row["variant"] for row in rows):
        group = [row for row in rows if row["variant"] == name]
        rewards = group[0]["rewards"] if isinstance(group[0]["rewards"], str) else ", ".join(group[0]["rewards"])
        if "skipped" in group[0]:
            lines.append(f"| ({name}) | {rewards} | | skipped: {group[0]['skipped'][:60]} |" + " |" * len(columns))
            continue
        cells = []
        for split, metric in columns:
            values = np.array([row[split][metric] for row in group])
            cells.append(f"{values.mean():.4f}" + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""))
        seconds = np.mean([row["train_seconds"] for row in group])
        lines.append(f"| ({name}) | {rewards} | {len(group)} | {seconds:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
