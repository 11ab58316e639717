"""P5 / S3-Rec files: `sequential_data.txt` + `datamaps.json` (+ item attribute names, + optional raw meta).

`sequential_data.txt` holds one user a line, `user_index item_index ...` in chronological order; `datamaps.json`
maps the indices to Amazon user and item ids (ASINs), which become `user_id` / `item_id` so that the same item has
the same id whether it comes from these files or from the raw Amazon dumps. Item text comes from
`item_attributes.json` (`{index: {"asin", "attributes": [brand?, category, ...]}}`) and, when a raw Amazon
`meta_*.json[.gz]` sits in the same folder, from its title/description/brand/categories/image.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from datasets import Dataset

from deepinterestgr.data.formats._io import find_file, iter_records, read_json, require_dir
from deepinterestgr.data.formats.amazon_meta import meta_to_record
from deepinterestgr.data.schema import ItemRecord, build_items, build_sequences
from deepinterestgr.errors import DataError

UNKNOWN_BRAND = "Unknown"


def split_brand_categories(attribute_lists: list[list[str]]) -> list[tuple[str | None, list[str]]]:
    """Tell the brand from the categories in P5 attribute lists, where the brand (if known) comes first.

    A top-level category appears first when the brand is missing and second when it is present, and never deeper;
    a brand only ever appears first. So a first attribute that also occurs at position 1, and never deeper, is a
    category, anything else first is the brand. Learned from the lists themselves, no hard-coded names.
    """
    depth: dict[str, Counter] = {}
    for attrs in attribute_lists:
        for position, name in enumerate(attrs):
            depth.setdefault(name, Counter())[min(position, 2)] += 1
    roots = {name for name, c in depth.items() if c[0] and c[1] and not c[2]}
    out: list[tuple[str | None, list[str]]] = []
    for attrs in attribute_lists:
        if attrs and attrs[0] not in roots:
            brand = None if attrs[0] == UNKNOWN_BRAND else attrs[0]
            out.append((brand, list(attrs[1:])))
        else:
            out.append((None, list(attrs)))
    return out


def _index_map(datamaps: dict, key: str, path: Path) -> dict[str, str]:
    table = datamaps.get(key)
    if not isinstance(table, dict):
        raise DataError(f"{path}: missing the {key!r} table; use the datamaps.json written by P5's preprocessing")
    return {str(k): str(v) for k, v in table.items()}


def load_p5(path: str | Path) -> tuple[Dataset, Dataset]:
    """Items and sequences from a P5/S3-Rec folder."""
    folder = require_dir(path, fmt="P5")
    seq_path = find_file(folder, ("sequential_data.txt",), what="sequence")
    maps_path = find_file(folder, ("datamaps.json",), what="id map")
    datamaps = read_json(maps_path)
    if not isinstance(datamaps, dict):
        raise DataError(f"{maps_path}: expected a JSON object with id2user/id2item tables")
    id2item = _index_map(datamaps, "id2item", maps_path)
    id2user = _index_map(datamaps, "id2user", maps_path)

    users: list[str] = []
    sequences: list[list[str]] = []
    with seq_path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise DataError(f"{seq_path}:{lineno}: user {tokens[0]} has no items; remove the line")
            for tok in tokens:
                if not tok.isdigit():
                    raise DataError(f"{seq_path}:{lineno}: {tok!r} is not an integer index; fix the line")
            if tokens[0] not in id2user:
                raise DataError(f"{seq_path}:{lineno}: user index {tokens[0]} has no entry in {maps_path.name} id2user")
            missing = next((t for t in tokens[1:] if t not in id2item), None)
            if missing is not None:
                raise DataError(
                    f"{seq_path}:{lineno}: item index {missing} has no entry in {maps_path.name} id2item; "
                    "the two files must come from the same preprocessing run"
                )
            users.append(id2user[tokens[0]])
            sequences.append([id2item[t] for t in tokens[1:]])

    records = {asin: ItemRecord(item_id=asin) for asin in id2item.values()}
    attr_path = find_file(folder, ("item_attributes.json",), what="item attribute", required=False)
    if attr_path is not None:
        attributes = read_json(attr_path)
        if not isinstance(attributes, dict):
            raise DataError(f"{attr_path}: expected a JSON object mapping item index to its attributes")
        indices = [k for k in attributes if str(k) in id2item]
        lists = [list(attributes[k].get("attributes") or []) for k in indices]
        for index, (brand, cats) in zip(indices, split_brand_categories(lists), strict=True):
            record = records[id2item[str(index)]]
            record.brand, record.categories = brand, cats
    meta_path = find_file(folder, ("meta_*.json.gz", "meta_*.json"), what="Amazon meta", required=False)
    if meta_path is not None:
        for lineno, row in iter_records(meta_path):
            meta = meta_to_record(row, path=meta_path, lineno=lineno)
            if meta.item_id in records:
                old = records[meta.item_id]
                meta.brand = meta.brand or old.brand
                meta.categories = meta.categories or old.categories
                records[meta.item_id] = meta
    items = build_items(records.values())
    return items, build_sequences(users, sequences)
