"""The output of the prepare stage: items, sequences and their splits, saved and loaded as one folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk

from deepinterestgr.artifacts import quiet_datasets, read_manifest, stage_done, write_stage
from deepinterestgr.data.splits import leave_last_out
from deepinterestgr.data.stats import DataStats, compute_stats
from deepinterestgr.errors import DataError


@dataclass
class PreparedData:
    """Items and sequences (the contract of DESIGN.md) plus leave-last-out splits and where they came from."""

    items: Dataset
    sequences: Dataset
    splits: DatasetDict
    source: dict = field(default_factory=dict)  # format, path and options the data was prepared with

    @classmethod
    def from_tables(
        cls, items: Dataset, sequences: Dataset, *, max_history: int | None = None, source: dict | None = None
    ) -> PreparedData:
        """Build the splits from `sequences` and bundle everything."""
        source = dict(source or {}, max_history=max_history)
        return cls(items, sequences, leave_last_out(sequences, max_history=max_history), source)

    def stats(self) -> DataStats:
        return compute_stats(self.items, self.sequences)

    def save_to_disk(self, path: str | os.PathLike) -> Path:
        """Write `items/`, `sequences/`, `splits/` and a manifest, atomically."""

        def write(tmp: Path) -> None:
            self.items.save_to_disk(tmp / "items")
            self.sequences.save_to_disk(tmp / "sequences")
            self.splits.save_to_disk(tmp / "splits")

        manifest = {"stage": "prepare", "source": self.source, "stats": self.stats().to_dict()}
        return write_stage(path, manifest, write)

    @classmethod
    def load_from_disk(cls, path: str | os.PathLike) -> PreparedData:
        """Load a folder written by `save_to_disk`."""
        path = Path(path)
        if not cls.is_prepared(path):
            raise DataError(f"{path}: not a prepared dataset folder; create it with `deepinterestgr prepare`")
        manifest = read_manifest(path)
        with quiet_datasets():
            return cls(
                items=load_from_disk(str(path / "items")),
                sequences=load_from_disk(str(path / "sequences")),
                splits=load_from_disk(str(path / "splits")),
                source=manifest.get("source", {}),
            )

    @staticmethod
    def is_prepared(path: str | os.PathLike) -> bool:
        """True when `path` holds a complete prepared folder (used by the pipeline to resume)."""
        return stage_done(path) and read_manifest(path).get("stage") == "prepare"
