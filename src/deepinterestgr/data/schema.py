"""The two tables every loader produces, and their checks.

Items: one row per catalogue item. Sequences: one row per user, item ids in chronological order.
Later stages add columns to items (caption, descriptors, embedding, sid, ...) and read only columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from datasets import Dataset, Features, Value
from datasets import List as ListFeature

from deepinterestgr.errors import DataError

ITEM_FEATURES = Features(
    {
        "item_id": Value("string"),
        "title": Value("string"),
        "description": Value("string"),
        "brand": Value("string"),
        "categories": ListFeature(Value("string")),
        "image": Value("string"),
    }
)
SEQUENCE_FEATURES = Features(
    {
        "user_id": Value("string"),
        "item_ids": ListFeature(Value("string")),
        "timestamps": ListFeature(Value("int64")),
    }
)
TEXT_FIELDS = ("title", "description", "brand", "categories", "image")


@dataclass
class ItemRecord:
    """One catalogue item as a loader reads it; empty strings become None."""

    item_id: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    categories: list[str] = field(default_factory=list)
    image: str | None = None

    def as_row(self) -> dict:
        def clean(value: str | None) -> str | None:
            value = (value or "").strip()
            return value or None

        return {
            "item_id": self.item_id,
            "title": clean(self.title),
            "description": clean(self.description),
            "brand": clean(self.brand),
            "categories": [c.strip() for c in self.categories if c and c.strip()],
            "image": clean(self.image),
        }


def build_items(records: Iterable[ItemRecord]) -> Dataset:
    """Items `Dataset` from records; item ids must be unique."""
    rows = [r.as_row() for r in records]
    seen: set[str] = set()
    for row in rows:
        if row["item_id"] in seen:
            raise DataError(f"item id {row['item_id']!r} appears twice in the item table; item ids must be unique")
        seen.add(row["item_id"])
    columns = {name: [row[name] for row in rows] for name in ITEM_FEATURES}
    return Dataset.from_dict(columns, features=ITEM_FEATURES)


def build_sequences(
    user_ids: Sequence[str],
    item_ids: Sequence[Sequence[str]],
    timestamps: Sequence[Sequence[int] | None] | None = None,
) -> Dataset:
    """Sequences `Dataset`; every sequence must be non-empty and timestamps (if any) aligned."""
    if timestamps is None:
        timestamps = [None] * len(user_ids)
    for user, items, times in zip(user_ids, item_ids, timestamps, strict=True):
        if not items:
            raise DataError(
                f"user {user!r} has an empty sequence after filtering; drop the user or lower the k-core threshold"
            )
        if times is not None and len(times) != len(items):
            raise DataError(f"user {user!r}: {len(items)} items but {len(times)} timestamps")
    return Dataset.from_dict(
        {"user_id": list(user_ids), "item_ids": [list(s) for s in item_ids], "timestamps": list(timestamps)},
        features=SEQUENCE_FEATURES,
    )


def check_sequences_in_catalogue(items: Dataset, sequences: Dataset, *, source: str) -> None:
    """Every item id in `sequences` must have a row in `items`; names the first offender."""
    known = set(items["item_id"])
    for user, seq in zip(sequences["user_id"], sequences["item_ids"], strict=True):
        for item in seq:
            if item not in known:
                raise DataError(
                    f"{source}: user {user!r} has item {item!r} that has no row in the item table; "
                    "add the item or remove it from the sequence"
                )
