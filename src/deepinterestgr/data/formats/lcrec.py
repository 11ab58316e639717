"""LC-Rec / LETTER files: `X.inter.json` (`{user: [item, ...]}`, chronological) + `X.item.json`."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from deepinterestgr.data.formats._io import find_file, read_json, require_dir
from deepinterestgr.data.formats._items_json import read_item_json
from deepinterestgr.data.schema import build_items, build_sequences
from deepinterestgr.errors import DataError


def load_lcrec(path: str | Path) -> tuple[Dataset, Dataset]:
    """Items and sequences from an LC-Rec/LETTER folder."""
    folder = require_dir(path, fmt="LC-Rec")
    inter_path = find_file(folder, ("*.inter.json",), what="interaction")
    item_path = find_file(folder, ("*.item.json",), what="item")
    records = read_item_json(item_path)
    inter = read_json(inter_path)
    if not isinstance(inter, dict):
        raise DataError(f"{inter_path}: expected a JSON object mapping user id to a list of item ids")
    users, sequences = [], []
    for user, items in inter.items():
        if not isinstance(items, list) or not items:
            raise DataError(f"{inter_path}: user {user!r} has no item list; remove the user or add items")
        seq = [str(i) for i in items]
        missing = next((i for i in seq if i not in records), None)
        if missing is not None:
            raise DataError(
                f"{inter_path}: user {user!r} has item {missing!r} that has no row in {item_path.name}; "
                "use the item file from the same preprocessing run"
            )
        users.append(str(user))
        sequences.append(seq)
    return build_items(records.values()), build_sequences(users, sequences)
