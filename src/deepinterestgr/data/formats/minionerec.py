"""MiniOneRec files: `X.item.json` + `valid_*.csv` / `test_*.csv` (and `train_*.csv` when present).

Each CSV row is one prediction (user_id, history_item_id = the last <=10 items, item_id = the target); a user has
several rows. A user's sequence is rebuilt by stitching the rows in file order (train, valid, test): each row's
history overlaps the end of what is known so far, and its target extends it.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from datasets import Dataset

from deepinterestgr.data.formats._io import find_file, require_dir
from deepinterestgr.data.formats._items_json import read_item_json
from deepinterestgr.data.schema import build_items, build_sequences
from deepinterestgr.errors import DataError

REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id")


def stitch(sequence: list[str], history: list[str], target: str) -> list[str]:
    """Extend `sequence` with a row's history (where it is not already its suffix) and target."""
    overlap = 0
    for size in range(min(len(sequence), len(history)), 0, -1):
        if sequence[-size:] == history[:size]:
            overlap = size
            break
    return [*sequence, *history[overlap:], target]


def _read_rows(path: Path) -> list[tuple[int, str, list[str], str]]:
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected MiniOneRec's CSV header")
        for row in reader:
            lineno = reader.line_num
            try:
                history = ast.literal_eval(row["history_item_id"])
                if not isinstance(history, list):
                    raise ValueError
            except (ValueError, SyntaxError):
                raise DataError(
                    f"{path}:{lineno}: history_item_id {row['history_item_id']!r} is not a list of item ids"
                ) from None
            rows.append((lineno, row["user_id"], [str(h) for h in history], str(row["item_id"]).strip()))
    return rows


def load_minionerec(path: str | Path) -> tuple[Dataset, Dataset]:
    """Items and sequences from a MiniOneRec folder."""
    folder = require_dir(path, fmt="MiniOneRec")
    item_path = find_file(folder, ("*.item.json",), what="item")
    records = read_item_json(item_path)
    csv_paths = [
        p
        for p in (
            find_file(folder, (f"{split}_*.csv",), what=f"{split} CSV", required=split != "train")
            for split in ("train", "valid", "test")
        )
        if p is not None
    ]
    sequences: dict[str, list[str]] = {}
    for csv_path in csv_paths:
        for lineno, user, history, target in _read_rows(csv_path):
            missing = next((i for i in [*history, target] if i not in records), None)
            if missing is not None:
                raise DataError(
                    f"{csv_path}:{lineno}: item {missing!r} has no row in {item_path.name}; "
                    "use the item file from the same MiniOneRec run"
                )
            sequences[user] = stitch(sequences.get(user, []), history, target)
    users = list(sequences)
    return build_items(records.values()), build_sequences(users, [sequences[u] for u in users])
