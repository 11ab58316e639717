"""One SFT field at several values on a pipeline's data and SIDs: train each value x seed, rank every valid user.

How a library default is checked on the bundled sample before it changes (RESULTS: `backbone.dropout`). Run
`deepinterestgr pipeline --config configs/quickstart.yaml` first (or any config: its `prepared/` and `sid/` are
used), then e.g.

    .venv/bin/python benchmarks/sample_sweep.py --config configs/quickstart.yaml --field backbone.dropout \
        --values 0.1 0 --seeds 42 2333 6666

Each run trains the config's `sft` section with that one field changed; finished runs are reused, so an
interrupted sweep resumes. Prints a markdown table of valid HR/NDCG per value (per seed and mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import yaml

from deepinterestgr.artifacts import stage_done
from deepinterestgr.config import PipelineConfig
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.errors import ConfigError
from deepinterestgr.evaluation.evaluate import evaluate_recommender
from deepinterestgr.recommender.arguments import RecommenderSFTArguments
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.stages import run_sft

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")


def with_field(args: RecommenderSFTArguments, field: str, value: object) -> RecommenderSFTArguments:
    """`args` with one (dotted) field set, validated as the config would be."""
    head, _, rest = field.partition(".")
    if not hasattr(args, head):
        raise ConfigError(f"--field {field}: the sft section has no field {head!r}")
    return replace(args, **{head: with_field(getattr(args, head), rest, value) if rest else value})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/quickstart.yaml"))
    parser.add_argument("--field", required=True, help="sft field, dotted for nested ones (backbone.dropout)")
    parser.add_argument("--values", nargs="+", required=True, help="values, read as YAML (0.1, true, [a, b])")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 2333, 6666])
    parser.add_argument("--out", type=Path, default=None, help="default: <output_dir>/sweep-<field>")
    cli = parser.parse_args()

    config = PipelineConfig.from_yaml(cli.config)
    base = Path(config.output_dir)
    prepared_dir, sid_dir = base / "prepared", base / "sid"
    if not (PreparedData.is_prepared(prepared_dir) and stage_done(sid_dir)):
        raise ConfigError(f"{base}: no prepared data and SIDs yet; run `deepinterestgr pipeline --config {cli.config}`")
    valid = PreparedData.load_from_disk(prepared_dir).splits["valid"]
    out = cli.out or base / f"sweep-{cli.field}"

    rows: dict[str, list[dict]] = {}
    for raw in cli.values:
        for seed in cli.seeds:
            args = replace(with_field(config.sft, cli.field, yaml.safe_load(raw)), seed=seed)
            run = out / f"{raw}-seed{seed}"
            metrics_file = run / "valid.json"
            if not metrics_file.is_file():
                run_sft(prepared_dir, sid_dir, run / "sft", args)
                model = GenerativeRecommender.from_pretrained(run / "sft")
                metrics_file.write_text(json.dumps(evaluate_recommender(model, valid), indent=2))
            rows.setdefault(raw, []).append(json.loads(metrics_file.read_text()))

    seeds = " / ".join(map(str, cli.seeds))
    print(f"| {cli.field} | " + " | ".join(f"valid {m} (seeds {seeds}; mean)" for m in METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for raw, runs in rows.items():
        cells = [
            " / ".join(f"{r[m]:.4f}" for r in runs) + f" ({statistics.mean(r[m] for r in runs):.4f})" for m in METRICS
        ]
        print(f"| {raw} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
