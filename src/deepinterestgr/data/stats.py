"""Dataset statistics: sizes, sequence lengths, and how much item text each field carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from datasets import Dataset
from rich.table import Table

from deepinterestgr.data.schema import TEXT_FIELDS
from deepinterestgr.data.splits import MIN_SEQUENCE_LENGTH


@dataclass(frozen=True)
class DataStats:
    """What `deepinterestgr prepare` reports."""

    users: int
    items: int
    interactions: int
    mean_length: float
    min_length: int
    max_length: int
    distinct_item_texts: int  # items whose text (all fields) is identical cannot be told apart by text alone
    users_too_short: int  # users with fewer than 3 items: left out of the leave-last-out splits
    coverage: dict[str, float]  # fraction of items with a non-empty value, per field

    def to_dict(self) -> dict:
        return asdict(self)


def compute_stats(items: Dataset, sequences: Dataset) -> DataStats:
    """Compute `DataStats` from the items and sequences tables."""
    lengths = np.fromiter((len(s) for s in sequences["item_ids"]), dtype=np.int64, count=len(sequences))
    columns = {name: items[name] for name in TEXT_FIELDS}
    coverage = {
        name: (sum(1 for v in values if v) / len(items)) if len(items) else 0.0 for name, values in columns.items()
    }
    texts = {
        (r_title, r_desc, r_brand, tuple(r_cats))
        for r_title, r_desc, r_brand, r_cats in zip(
            columns["title"], columns["description"], columns["brand"], columns["categories"], strict=True
        )
    }
    return DataStats(
        users=len(sequences),
        items=len(items),
        interactions=int(lengths.sum()),
        mean_length=float(lengths.mean()) if len(lengths) else 0.0,
        min_length=int(lengths.min()) if len(lengths) else 0,
        max_length=int(lengths.max()) if len(lengths) else 0,
        distinct_item_texts=len(texts),
        users_too_short=int((lengths < MIN_SEQUENCE_LENGTH).sum()),
        coverage=coverage,
    )


def stats_table(stats: DataStats, *, title: str = "dataset") -> Table:
    """A rich table of `stats` for the terminal."""
    table = Table(title=title, show_header=True)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("users", f"{stats.users:,}")
    table.add_row("items", f"{stats.items:,}")
    table.add_row("interactions", f"{stats.interactions:,}")
    table.add_row("sequence length mean", f"{stats.mean_length:.2f}")
    table.add_row("sequence length min / max", f"{stats.min_length} / {stats.max_length}")
    table.add_row("distinct item texts", f"{stats.distinct_item_texts:,}")
    table.add_row("users too short to split (<3)", f"{stats.users_too_short:,}")
    for name, value in stats.coverage.items():
        table.add_row(f"coverage: {name}", f"{value:.1%}")
    return table
