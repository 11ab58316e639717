"""Field mapping of raw Amazon review and metadata records (2014, 2018 and 2023 releases) to our columns."""

from __future__ import annotations

from pathlib import Path

from deepinterestgr.data.formats._io import text_list
from deepinterestgr.data.schema import ItemRecord
from deepinterestgr.errors import DataError

# Candidate keys, newest release first: 2023 uses parent_asin/user_id/timestamp (ms), 2014/2018 asin/reviewerID/
# unixReviewTime (s). Items are keyed by parent_asin in 2023 because variants share it and its metadata.
ITEM_KEYS = ("parent_asin", "asin")
USER_KEYS = ("user_id", "reviewerID")


def _first_key(row: dict, keys: tuple[str, ...], *, path: Path, lineno: int, what: str) -> str:
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return str(value)
    raise DataError(f"{path}:{lineno}: no {what} field (expected one of {', '.join(keys)})")


def review_to_interaction(row: dict, *, path: Path, lineno: int) -> tuple[str, str, int]:
    """(user id, item id, unix seconds) of one review line."""
    user = _first_key(row, USER_KEYS, path=path, lineno=lineno, what="user")
    item = _first_key(row, ITEM_KEYS, path=path, lineno=lineno, what="item")
    if "unixReviewTime" in row:
        raw, scale = row["unixReviewTime"], 1
    elif "timestamp" in row:
        raw, scale = row["timestamp"], 1000  # 2023 release: milliseconds
    else:
        raise DataError(f"{path}:{lineno}: no time field (expected unixReviewTime or timestamp)")
    try:
        return user, item, int(raw) // scale
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: time value {raw!r} is not an integer") from None


def _image(row: dict) -> str | None:
    if row.get("imUrl"):  # 2014
        return str(row["imUrl"])
    for key in ("imageURLHighRes", "imageURL"):  # 2018
        urls = text_list(row.get(key))
        if urls:
            return urls[0]
    for image in row.get("images") or []:  # 2023: list of {"hi_res", "large", "thumb", ...}
        if isinstance(image, dict):
            for key in ("hi_res", "large", "thumb"):
                if image.get(key):
                    return str(image[key])
    return None


def _brand(row: dict) -> str | None:
    if row.get("brand"):
        return str(row["brand"])
    details = row.get("details")
    if isinstance(details, dict) and details.get("Brand"):
        return str(details["Brand"])
    return str(row["store"]) if row.get("store") else None


def meta_to_record(row: dict, *, path: Path, lineno: int) -> ItemRecord:
    """An `ItemRecord` from one metadata line of any release."""
    item = _first_key(row, ITEM_KEYS, path=path, lineno=lineno, what="item")
    categories = text_list(row.get("categories", row.get("category")))
    return ItemRecord(
        item_id=item,
        title=str(row["title"]) if row.get("title") else None,
        description=" ".join(text_list(row.get("description"))) or None,
        brand=_brand(row),
        categories=categories,
        image=_image(row),
    )
