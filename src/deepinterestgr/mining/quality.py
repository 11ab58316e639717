"""QARM item quality: how much of an item's mined intent the judge found specific, actionable and grounded.

`q_i = sum_k c_k * y_k / sum_k c_k` over the item's descriptors, with the miner's confidences `c_k` and the
judge's 0/1 labels `y_k`; without confidences every descriptor weighs 1. An item with no descriptors has no
grounded intent: q = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from datasets import Dataset

from deepinterestgr.errors import DataError


def item_quality(labels: Sequence[int], confidences: Sequence[float] | None = None, *, item: str = "?") -> float:
    """q_i of one item from its descriptors' judge labels and (optional) confidences."""
    if any(y not in (0, 1) for y in labels):
        raise DataError(f"item {item!r}: descriptor_labels must be 0 or 1, got {list(labels)}")
    if confidences is None:
        return sum(labels) / len(labels) if labels else 0.0
    if len(confidences) != len(labels):
        raise DataError(
            f"item {item!r}: {len(confidences)} descriptor_confidences for {len(labels)} descriptor_labels; "
            "re-run `deepinterestgr judge` on the mined items"
        )
    bad = next((c for c in confidences if not (isinstance(c, int | float) and 0.0 <= c <= 1.0)), None)
    if bad is not None:
        raise DataError(f"item {item!r}: descriptor confidence {bad!r} is outside [0, 1]")
    total = math.fsum(confidences)
    return math.fsum(c * y for c, y in zip(confidences, labels, strict=True)) / total if total > 0 else 0.0


def quality_column(items: Dataset) -> list[float]:
    """q_i of every item of a judged items table (`descriptor_labels`, optional `descriptor_confidences`).

    Confidences are used for all items or for none: a table where some items have them and others do not
    would weigh the two groups differently, so it is an error.
    """
    if "descriptor_labels" not in items.column_names:
        raise DataError("items: no `descriptor_labels` column; run `deepinterestgr judge` first")
    ids, labels = items["item_id"], items["descriptor_labels"]
    if "descriptor_confidences" not in items.column_names:
        return [item_quality(y or [], item=i) for i, y in zip(ids, labels, strict=True)]
    confidences = items["descriptor_confidences"]
    has = [bool(c) for c, y in zip(confidences, labels, strict=True) if y]
    if any(has) and not all(has):
        first = next(i for i, c, y in zip(ids, confidences, labels, strict=True) if y and not c)
        raise DataError(
            f"items: descriptor_confidences are missing for some items (first: {first!r}) but present for others; "
            "mine all items with the same backend settings or drop the column to weigh every descriptor 1"
        )
    return [item_quality(y or [], c or None, item=i) for i, y, c in zip(ids, labels, confidences, strict=True)]
