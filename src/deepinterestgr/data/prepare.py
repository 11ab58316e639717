"""The prepare stage: read a source folder, validate it, split it, and hand back `PreparedData`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from deepinterestgr.data.formats import load_format
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.schema import check_sequences_in_catalogue

SAMPLE_NAME = "beauty_2k"


def sample_path() -> Path:
    """Folder of the bundled sample (P5 format): 2,000 real Amazon Beauty users and all their items."""
    return Path(str(resources.files("deepinterestgr.data") / "samples" / SAMPLE_NAME))


def prepare(
    fmt: str = "p5",
    path: str | Path | None = None,
    *,
    k_core: int | None = None,
    max_history: int | None = None,
) -> PreparedData:
    """Load `path` as `fmt` (the bundled sample when `path` is None) into items, sequences and splits."""
    source_path = sample_path() if path is None else Path(path)
    items, sequences = load_format(fmt, source_path, k_core=k_core)
    check_sequences_in_catalogue(items, sequences, source=str(source_path))
    source = {"format": fmt, "path": "bundled:" + SAMPLE_NAME if path is None else str(source_path), "k_core": k_core}
    return PreparedData.from_tables(items, sequences, max_history=max_history, source=source)


def load_sample(*, max_history: int | None = None) -> PreparedData:
    """The bundled sample, prepared."""
    return prepare("p5", None, max_history=max_history)
