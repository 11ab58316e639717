"""Mine and judge every Amazon Beauty item (brand + category text) with SmolLM2-135M-Instruct on this machine.

Resumable: answers are cached in `--out/cache.sqlite`; kill it at any time and run it again. The answers so far are
committed as `benchmarks/data/beauty_mining_answers.jsonl.gz` (`--export-only` writes it from the cache; every run
merges it into the cache first), so a new machine resumes from the last commit. Writes the mined and
judged items as parquet (`--out/beauty_mined.parquet`), the failures (`failures.jsonl`) and a report with items/s,
schema-valid rate, descriptors per item, the share of descriptors that only repeat the item's own words, and the
positive-label rate of each judge (LLM 0/1 prompt, grounding score, RLDI classifier trained on the grounding labels).

Run: `.venv/bin/python benchmarks/mine_beauty.py [--out runs/mining] [--limit N] [--threads 1]`
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import torch

from deepinterestgr.data import load_sample, prepare
from deepinterestgr.data.prepare import sample_path
from deepinterestgr.mining.cache import AnswerCache
from deepinterestgr.mining.judge import (
    JudgeReport,
    classifier_labels,
    grounding_labels,
    grounding_scores,
    llm_labels,
    train_classifier,
    with_labels,
)
from deepinterestgr.mining.local import LocalBackend
from deepinterestgr.mining.miner import mine_items
from deepinterestgr.stages import BUNDLED_MINED, MINED_COLUMNS

TEXT = ("title", "brand", "categories", "description")  # what the descriptor prompt reads of an item
ANSWERS = Path(__file__).resolve().parent / "data" / "beauty_mining_answers.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--beauty", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon/beauty"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/mining"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=1.25, help="per-token grounding score for label 1")
    parser.add_argument("--answers", type=Path, default=ANSWERS, help="committed answers, merged into the cache")
    parser.add_argument("--export-only", action="store_true", help="write --answers from the cache and stop")
    parser.add_argument(
        "--shard", default=None, help="K/N: mine and judge only the K-th of N slices (run N at once on N cores, then "
        "once without --shard, which answers from the shared cache and writes the outputs)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-out", type=Path, default=sample_path() / BUNDLED_MINED,
        help="where the bundled sample's cut of the mined + judged columns goes ('' to skip)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.export_only:
        with AnswerCache(args.out / "cache.sqlite") as cache:
            print(f"{cache.export_jsonl(args.answers)} answers written to {args.answers}")
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    items = prepare("p5", args.beauty).items
    if args.limit:
        items = items.select(range(args.limit))
    shard = None
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        # by the item's text, not its row: items with the same text share one prompt, so they share a shard
        items = items.filter(lambda row: zlib.crc32(json.dumps([row[c] for c in TEXT]).encode()) % n == k)
        shard = f"shard-{k}-of-{n}"
    backend = LocalBackend(batch_size=args.batch_size)
    with AnswerCache(args.out / "cache.sqlite") as cache:
        if args.answers.is_file():
            print(f"{cache.import_jsonl(args.answers)} committed answers merged into the cache", flush=True)
        started = time.perf_counter()
        mined, report = mine_items(items, [backend], cache)
        summary = {"mining": report.summary(mined), "threads": args.threads, "model": backend.model}
        print(json.dumps(summary["mining"], indent=2), flush=True)
        with (args.out / f"failures{'-' + shard if shard else ''}.jsonl").open("w") as f:
            for failure in report.failures:
                f.write(json.dumps(failure) + "\n")
        judges = {}
        t0 = time.perf_counter()
        scores = grounding_scores(mined, backend, cache)
        judged = with_labels(mined, grounding_labels(mined, scores, threshold=args.threshold), scores)
        judges["grounding"] = {"seconds": round(time.perf_counter() - t0, 1), **_rate(judged)}
        t0 = time.perf_counter()
        llm_report = JudgeReport("llm")
        llm = llm_labels(mined, backend, cache, llm_report)
        judges["llm"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "positive_rate": _positive(llm),
            "failures": len(llm_report.failures),
        }
        if shard:  # the unsharded run trains RLDI on every label and writes the outputs
            summary["total_seconds"] = round(time.perf_counter() - started, 1)
            (args.out / f"report-{shard}.json").write_text(json.dumps({**summary, "judges": judges}, indent=2))
            print(json.dumps({**summary, "judges": judges}, indent=2))
            return
        t0 = time.perf_counter()
        if len({y for row in judged["descriptor_labels"] for y in row}) == 2:
            classifier = train_classifier(judged)
            classifier.save(args.out / "rldi")
            judges["rldi"] = {
                "seconds": round(time.perf_counter() - t0, 1),
                "positive_rate": _positive(classifier_labels(judged, classifier)),
                **classifier.report,
            }
        else:
            judges["rldi"] = {"skipped": "the grounding labels have one class only at this threshold"}
        judged = judged.add_column("llm_labels", llm)
        summary["judges"] = judges
        cache.export_jsonl(args.answers)
        summary["total_seconds"] = round(time.perf_counter() - started, 1)
    judged.remove_columns([c for c in ("image",) if c in judged.column_names]).to_parquet(
        str(args.out / "beauty_mined.parquet")
    )
    (args.out / "report.json").write_text(json.dumps(summary, indent=2))
    if str(args.sample_out) and not args.limit:
        sample_ids = set(load_sample().items["item_id"])
        cut = judged.filter(lambda row: row["item_id"] in sample_ids)
        cut.select_columns(["item_id", *[c for c in MINED_COLUMNS if c in cut.column_names]]).to_parquet(
            str(args.sample_out)
        )
        print(f"{len(cut):,} sample items written to {args.sample_out}")
    print(json.dumps(summary, indent=2))


def _positive(labels: list[list[int]]) -> float:
    flat = [y for row in labels for y in row]
    return sum(flat) / len(flat) if flat else 0.0


def _rate(items) -> dict:
    return {"positive_rate": _positive(items["descriptor_labels"]), "mean_quality": sum(items["quality"]) / len(items)}


if __name__ == "__main__":
    main()
