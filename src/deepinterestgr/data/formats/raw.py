"""Raw Amazon review dumps: 2014 (`reviews_X[_5].json.gz` + `meta_X.json.gz`, Python-literal lines) and
2018/2023 (JSON lines, gz or not). Interactions are k-core filtered and ordered by time per user."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datasets import Dataset
from tqdm.auto import tqdm

from deepinterestgr.data.formats._io import iter_records, require_dir
from deepinterestgr.data.formats.amazon_meta import meta_to_record, review_to_interaction
from deepinterestgr.data.kcore import k_core
from deepinterestgr.data.schema import ItemRecord, build_items, build_sequences
from deepinterestgr.errors import DataError

REVIEW_PATTERNS = {
    "amazon2014": ("reviews_*.json.gz", "reviews_*.json"),
    "amazon2018": ("*.jsonl.gz", "*.jsonl", "*.json.gz", "*.json"),
}
META_PATTERNS = ("meta_*.jsonl.gz", "meta_*.jsonl", "meta_*.json.gz", "meta_*.json")


def _find(folder: Path, patterns: tuple[str, ...], *, what: str, exclude_meta: bool) -> Path:
    for pattern in patterns:
        matches = sorted(p for p in folder.glob(pattern) if not (exclude_meta and p.name.startswith("meta_")))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise DataError(f"{folder}: several {what} files match {pattern!r} ({names}); keep one dataset per folder")
    raise DataError(f"{folder}: missing {what} file (looked for {' or '.join(patterns)})")


def load_amazon_raw(path: str | Path, *, release: str = "amazon2018", k: int = 5) -> tuple[Dataset, Dataset]:
    """Items and sequences from a folder holding one reviews file and one meta file of an Amazon release."""
    if release not in REVIEW_PATTERNS:
        raise DataError(f"unknown Amazon release {release!r}; use one of {', '.join(REVIEW_PATTERNS)}")
    folder = require_dir(path, fmt=release)
    reviews_path = _find(folder, REVIEW_PATTERNS[release], what="reviews", exclude_meta=True)
    meta_path = _find(folder, META_PATTERNS, what="meta", exclude_meta=False)

    seen: set[tuple[str, str, int]] = set()
    interactions: list[tuple[str, str, int]] = []
    for lineno, row in tqdm(iter_records(reviews_path), desc=f"reading {reviews_path.name}", unit=" reviews"):
        interaction = review_to_interaction(row, path=reviews_path, lineno=lineno)
        if interaction not in seen:  # the same review listed twice (2018 dumps have such lines)
            seen.add(interaction)
            interactions.append(interaction)
    if not interactions:
        raise DataError(f"{reviews_path}: no reviews; is this the right file?")
    keep = k_core([(u, i) for u, i, _ in interactions], k)
    interactions = [x for x, kept in zip(interactions, keep, strict=True) if kept]
    if not interactions:
        raise DataError(f"{reviews_path}: no interactions survive {k}-core filtering; lower --k-core")

    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for order, (user, item, time) in enumerate(interactions):
        by_user[user].append((time, order, item))  # order breaks ties: the file's order for equal timestamps
    users = sorted(by_user)
    item_ids, timestamps = [], []
    for user in users:
        events = sorted(by_user[user])
        item_ids.append([item for _, _, item in events])
        timestamps.append([time for time, _, _ in events])

    needed = {i for _, i, _ in interactions}
    records: dict[str, ItemRecord] = {}
    for lineno, row in tqdm(iter_records(meta_path), desc=f"reading {meta_path.name}", unit=" items"):
        record = meta_to_record(row, path=meta_path, lineno=lineno)
        if record.item_id in needed and record.item_id not in records:
            records[record.item_id] = record
    for item in sorted(needed - records.keys()):  # reviewed items without a meta line keep an empty text
        records[item] = ItemRecord(item_id=item)
    items = build_items(records[i] for i in sorted(records))
    return items, build_sequences(users, item_ids, timestamps)
