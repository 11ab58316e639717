"""Source formats: each loader turns a folder of files into the items and sequences tables."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from datasets import Dataset

from deepinterestgr.data.formats.lcrec import load_lcrec
from deepinterestgr.data.formats.minionerec import load_minionerec
from deepinterestgr.data.formats.p5 import load_p5
from deepinterestgr.data.formats.raw import load_amazon_raw
from deepinterestgr.data.kcore import k_core_tables
from deepinterestgr.errors import DataError

Loader = Callable[..., tuple[Dataset, Dataset]]

FORMATS: dict[str, Loader] = {
    "p5": load_p5,
    "lcrec": load_lcrec,
    "minionerec": load_minionerec,
    "amazon2014": partial(load_amazon_raw, release="amazon2014"),
    "amazon2018": partial(load_amazon_raw, release="amazon2018"),
    "amazon2023": partial(load_amazon_raw, release="amazon2018"),  # same JSON-lines layout, 2023 field names
}
RAW_FORMATS = frozenset({"amazon2014", "amazon2018", "amazon2023"})
DEFAULT_RAW_K_CORE = 5


def load_format(fmt: str, path: str | Path, *, k_core: int | None = None) -> tuple[Dataset, Dataset]:
    """Items and sequences of `path` read as `fmt`.

    Raw Amazon dumps are k-core filtered (5 unless `k_core` says otherwise); the preprocessed formats already
    are, and are filtered again only when `k_core` is given.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if fmt in RAW_FORMATS:
        return FORMATS[fmt](path, k=k_core or DEFAULT_RAW_K_CORE)
    items, sequences = FORMATS[fmt](path)
    if k_core:
        items, sequences = k_core_tables(items, sequences, k_core)
    return items, sequences
