"""The output of the prepare stage: items, sequences and their splits, saved and loaded as one folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from deepinterestgr.data.splits import leave_last_out
from deepinterestgr.data.stats import DataStats, compute_stats
from deepinterestgr.errors import DataError

MANIFEST = "prepare.json"


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide datasets' per-table save/load bars (instant here) so the stats table stays readable."""
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


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
        """Write the folder atomically: a crash mid-write never leaves a folder that looks complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            with _quiet_datasets():
                self.items.save_to_disk(tmp / "items")
                self.sequences.save_to_disk(tmp / "sequences")
                self.splits.save_to_disk(tmp / "splits")
            manifest = {"source": self.source, "stats": self.stats().to_dict()}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load_from_disk(cls, path: str | os.PathLike) -> PreparedData:
        """Load a folder written by `save_to_disk`."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise DataError(
                f"{path}: not a prepared dataset folder (no {MANIFEST}); create it with `deepinterestgr prepare`"
            )
        manifest = json.loads((path / MANIFEST).read_text())
        with _quiet_datasets():
            return cls(
                items=load_from_disk(str(path / "items")),
                sequences=load_from_disk(str(path / "sequences")),
                splits=load_from_disk(str(path / "splits")),
                source=manifest.get("source", {}),
            )

    @staticmethod
    def is_prepared(path: str | os.PathLike) -> bool:
        """True when `path` holds a complete prepared folder (used by the pipeline to resume)."""
        return (Path(path) / MANIFEST).is_file()
