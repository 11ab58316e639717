"""The `X.item.json` table shared by LC-Rec, LETTER and MiniOneRec: `{item_id: {title, description, ...}}`."""

from __future__ import annotations

from pathlib import Path

from deepinterestgr.data.formats._io import read_json, text_list
from deepinterestgr.data.schema import ItemRecord
from deepinterestgr.errors import DataError


def read_item_json(path: Path) -> dict[str, ItemRecord]:
    """Item records keyed by item id (the JSON keys, as strings)."""
    table = read_json(path)
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a JSON object mapping item id to its fields")
    records: dict[str, ItemRecord] = {}
    for key, row in table.items():
        if not isinstance(row, dict):
            raise DataError(f"{path}: item {key!r} is {type(row).__name__}, expected an object with a title")
        records[str(key)] = ItemRecord(
            item_id=str(key),
            title=str(row["title"]) if row.get("title") else None,
            description=" ".join(text_list(row.get("description"))) or None,
            brand=str(row["brand"]) if row.get("brand") else None,
            categories=text_list(row.get("categories", row.get("category"))),
            image=str(row["image"]) if row.get("image") else None,
        )
    return records
