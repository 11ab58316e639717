"""How well each descriptor judge agrees with hand labels: 60 Beauty (item, descriptor) pairs mined by SmolLM2.

Labels (benchmarks/data/judge_labels_beauty.jsonl, by the developers): 1 when the descriptor is a specific,
actionable shopper intent grounded in the item's brand/categories; 0 when it is hallucinated, wrong for the item,
generic ("make your hair look its best"), garbled, repetitive, or only restates the brand/category. Reports ROC AUC
of the grounding score (raw and per token, with and without the restatement/repetition veto), balanced accuracy
over thresholds, and the 0/1 prompt judge's agreement, all with the same local model.

Run: `.venv/bin/python benchmarks/judge_calibration.py [--model HuggingFaceTB/SmolLM2-135M-Instruct]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import Dataset
from sklearn.metrics import roc_auc_score

from deepinterestgr.mining.cache import AnswerCache
from deepinterestgr.mining.judge import JudgeReport, grounding_labels, grounding_scores, llm_labels
from deepinterestgr.mining.local import LocalBackend

LABELS = Path(__file__).parent / "data" / "judge_labels_beauty.jsonl"


def balanced_accuracy(pred: list[int], gold: list[int]) -> float:
    pos = [p for p, g in zip(pred, gold, strict=True) if g]
    neg = [p for p, g in zip(pred, gold, strict=True) if not g]
    return (sum(pos) / len(pos) + sum(1 - p for p in neg) / len(neg)) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--cache", type=Path, default=Path("runs/judge-calibration.sqlite"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()]
    gold = [r["label"] for r in rows]
    # one pseudo-item per pair: the labelled text is what the miner saw (brand / categories lines)
    items = Dataset.from_list(
        [
            {
                "item_id": r["item_id"],
                "brand": next((x[7:] for x in r["item_text"].splitlines() if x.startswith("Brand: ")), None),
                "categories": next(
                    (x[12:].split(" > ") for x in r["item_text"].splitlines() if x.startswith("Categories: ")), []
                ),
                "descriptors": [r["descriptor"]],
            }
            for r in rows
        ]
    )
    backend = LocalBackend(args.model)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    with AnswerCache(args.cache) as cache:
        raw = [s[0] for s in grounding_scores(items, backend, cache, per_token=False)]
        per = [s[0] for s in grounding_scores(items, backend, cache)]
        llm = [y[0] for y in llm_labels(items, backend, cache, JudgeReport("llm"), progress=False)]
    print(f"{len(rows)} pairs, {sum(gold)} labelled 1 ({sum(gold) / len(gold):.0%}); model {backend.model}")
    print("| judge | ROC AUC | best threshold | balanced accuracy | positive rate |")
    print("|---|---|---|---|---|")
    for name, scores in (("grounding, raw difference", raw), ("grounding, per token", per)):
        for veto in (False, True):
            best = max(
                (balanced_accuracy(_labels(items, scores, t, veto), gold), t) for t in [x / 4 for x in range(-4, 41)]
            )
            predicted = _labels(items, scores, best[1], veto)
            vetoed = [
                s if y or not veto else s - 1e3 for s, y in zip(scores, _labels(items, scores, -1e9, veto), strict=True)
            ]
            print(
                f"| {name}{' + restatement/repetition veto' if veto else ''} | {roc_auc_score(gold, vetoed):.3f} "
                f"| {best[1]:.2f} | {best[0]:.3f} | {sum(predicted) / len(predicted):.0%} |"
            )
    print(f"| 0/1 prompt judge | - | - | {balanced_accuracy(llm, gold):.3f} | {sum(llm) / len(llm):.0%} |")


def _labels(items: Dataset, scores: list[float], threshold: float, veto: bool) -> list[int]:
    if veto:
        return [y[0] for y in grounding_labels(items, [[s] for s in scores], threshold=threshold)]
    return [int(s > threshold) for s in scores]


if __name__ == "__main__":
    main()
