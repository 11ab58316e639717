"""Stage outputs on disk: a `datasets` folder plus a manifest, written atomically so resume can trust them."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, load_from_disk
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from deepinterestgr.errors import DataError

MANIFEST = "stage.json"


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide datasets' per-table save/load bars (instant here) so the stage's own output stays readable."""
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def write_stage(path: str | Path, manifest: dict, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_folder)`, add the manifest, then move the folder into place in one rename, so a crash
    mid-write never leaves a folder that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with quiet_datasets():
            write(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def stage_done(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    if not stage_done(path):
        raise DataError(f"{path}: not a finished stage folder (no {MANIFEST}); run the stage that writes it")
    return json.loads((path / MANIFEST).read_text())


def load_items(path: str | Path, *, needs: tuple[str, ...] = ()) -> Dataset:
    """The `items` table of a stage folder (or a prepared folder), checking the columns the caller needs."""
    path = Path(path)
    folder = path / "items"
    if not folder.is_dir():
        raise DataError(f"{path}: no items table here; pass the output folder of `prepare`, `embed` or `quantize`")
    with quiet_datasets():
        items = load_from_disk(str(folder))
    missing = [c for c in needs if c not in items.column_names]
    if missing:
        raise DataError(f"{folder}: missing column(s) {', '.join(missing)}; run the stage that adds them first")
    return items
