"""The Recommend tab: pick a test user or compose a history by searching items, then the top 10 and why."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pandas as pd

from deepinterestgr.space.data import MISSING, HeldOutUser, InputError, ItemInfo, SpaceData
from deepinterestgr.space.explorer import prefix_tokens

TOP_K = 10
NUM_BEAMS = 20  # the papers' beam width; top-10 needs at least 10
MAX_QUERY_CHARS = 100
MIN_QUERY_CHARS = 2
MAX_SEARCH_RESULTS = 20
MAX_ID_CHARS = 64  # longer "ids" are pasted text, not user or item ids
MAX_SHOWN_DESCRIPTORS = 5

HISTORY_COLUMNS = ["position", "item_id", "item", "SID", "descriptors", "quality"]
RECOMMENDATION_COLUMNS = ["rank", "item_id", "item", "SID", "descriptors", "quality", "why", "score"]
SEARCH_COLUMNS = ["item_id", "item", "SID"]

_SEPARATORS = re.compile(r"[\s,;]+")
_LOCK = threading.Lock()  # one beam search at a time: the recommender's tokenizer is switched to left padding


@dataclass(frozen=True)
class RecommendationRow:
    rank: int
    item_id: str
    text: str
    sid: str
    descriptors: str
    quality: str
    why: str
    score: float


def format_descriptors(info: ItemInfo, limit: int = MAX_SHOWN_DESCRIPTORS) -> str:
    """Up to `limit` descriptors, "; "-separated, or "—" when the item has none (or mining did not run)."""
    if not info.descriptors:
        return MISSING
    more = len(info.descriptors) - limit
    return "; ".join(info.descriptors[:limit]) + (f" (+{more} more)" if more > 0 else "")


def format_quality(info: ItemInfo) -> str:
    return MISSING if info.quality is None else f"{info.quality:.2f}"


def user_history(data: SpaceData, user_id: str | None) -> HeldOutUser:
    """The test user `user_id` (history cut to the model's window, and the held-out target)."""
    user_id = (user_id or "").strip()
    if not user_id:
        raise InputError("choose a user first (or compose a history by searching items)")
    if len(user_id) > MAX_ID_CHARS:
        raise InputError(f"a user id has at most {MAX_ID_CHARS} characters; got {len(user_id)}")
    try:
        return data.users[user_id]
    except KeyError:
        raise InputError(f"unknown user {user_id!r}: pick one of the {len(data.users):,} test users") from None


def parse_history(data: SpaceData, text: str | None) -> list[str]:
    """Item ids separated by spaces, commas or semicolons, oldest first; every id must be in the catalogue and
    there are at most `max_history` of them (what the model reads)."""
    text = text or ""
    limit = data.max_history * (MAX_ID_CHARS + 1)
    if len(text) > limit:
        raise InputError(f"the history is {len(text):,} characters long; at most {limit:,}")
    ids = [i for i in _SEPARATORS.split(text.strip()) if i]
    if not ids:
        raise InputError("the history is empty: pick a user, or search items and add at least one")
    if len(ids) > data.max_history:
        raise InputError(
            f"the history has {len(ids)} items; this model reads at most {data.max_history}: remove the oldest"
        )
    unknown = list(dict.fromkeys(i for i in ids if i not in data.items))
    if unknown:
        shown = ", ".join(repr(i[:MAX_ID_CHARS]) for i in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise InputError(
            f"{len(unknown)} item id(s) not in the catalogue: {shown}; use the item search to find valid ids"
        )
    return ids


def history_frame(data: SpaceData, history: list[str]) -> pd.DataFrame:
    """The history as a table, oldest first."""
    rows = []
    for position, item_id in enumerate(history, start=1):
        info = data.items[item_id]
        tokens = data.sid_map.tokens_of(item_id)
        rows.append([position, item_id, info.text, tokens, format_descriptors(info), format_quality(info)])
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def search_items(data: SpaceData, query: str | None, *, limit: int = MAX_SEARCH_RESULTS) -> list[ItemInfo]:
    """Items whose brand, categories or title contain every word of `query` (case-insensitive); an exact item id
    comes first. At most `limit` results, in catalogue order."""
    query = " ".join((query or "").split())
    if len(query) < MIN_QUERY_CHARS:
        raise InputError(f"type at least {MIN_QUERY_CHARS} characters to search items")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"the search has {len(query)} characters; at most {MAX_QUERY_CHARS}")
    results = [data.items[query]] if query in data.items else []
    words = query.lower().split()
    for info in data.items.values():
        if len(results) >= limit:
            break
        if info.item_id != query and all(w in info.search_text for w in words):
            results.append(info)
    return results


def search_frame(data: SpaceData, results: list[ItemInfo]) -> pd.DataFrame:
    rows = [[info.item_id, info.text, data.sid_map.tokens_of(info.item_id)] for info in results]
    return pd.DataFrame(rows, columns=SEARCH_COLUMNS)


def add_item(data: SpaceData, history_text: str | None, item_id: str | None) -> str:
    """The history text with `item_id` appended (validated: known item, room left in the model's window)."""
    item_id = (item_id or "").strip()
    if not item_id:
        raise InputError("choose an item from the search results first")
    if item_id not in data.items:
        raise InputError(f"unknown item {item_id[:MAX_ID_CHARS]!r}: search for it first")
    ids = [i for i in _SEPARATORS.split((history_text or "").strip()) if i]
    if len(ids) >= data.max_history:
        raise InputError(f"the history is full ({data.max_history} items, what the model reads): remove one first")
    return " ".join([*ids, item_id])


def remove_item(history_text: str | None, item_id: str | None) -> str:
    """The history text without the last occurrence of `item_id` (unchanged when it is absent)."""
    ids = [i for i in _SEPARATORS.split((history_text or "").strip()) if i]
    if item_id in ids:
        del ids[len(ids) - 1 - ids[::-1].index(item_id)]
    return " ".join(ids)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def explain(data: SpaceData, item_id: str, history: list[str]) -> str:
    """Why `item_id` fits `history`: the mined descriptors it shares with the history items, and the longest SID
    prefix it shares with them (items with a common prefix were close in the embedding space)."""
    parts = []
    if item_id in history:
        parts.append("already in the history")
    seen = {d for h in history for d in data.items[h].descriptors or ()}
    shared = [d for d in data.items[item_id].descriptors or () if d in seen]
    if shared:
        parts.append("shared interests: " + ", ".join(shared[:MAX_SHOWN_DESCRIPTORS]))
    sid_map = data.sid_map
    levels = sid_map.num_levels
    codes = sid_map.codes_of(item_id)[:levels]
    lengths = [_common_prefix(codes, sid_map.codes_of(h)[:levels]) for h in history if h != item_id]
    best = max(lengths, default=0)
    if best:
        parts.append(f"SID prefix {prefix_tokens(codes[:best])} shared with {lengths.count(best)} history item(s)")
    return "; ".join(parts) or MISSING


def recommend(
    data: SpaceData, history: list[str], *, k: int = TOP_K, exclude_history: bool = False
) -> list[RecommendationRow]:
    """Top-`k` catalogue items for `history` (constrained beam search), with their text, SID, enrichment and why;
    `exclude_history`: none of the history's own items."""
    with _LOCK:
        recommendations = data.recommender.recommend(
            [history], k=k, num_beams=max(NUM_BEAMS, k), exclude_history=exclude_history
        )[0]
    rows = []
    for rank, rec in enumerate(recommendations, start=1):
        info = data.items[rec.item_id]
        rows.append(
            RecommendationRow(
                rank=rank,
                item_id=rec.item_id,
                text=info.text,
                sid=data.sid_map.tokens_of(rec.item_id),
                descriptors=format_descriptors(info),
                quality=format_quality(info),
                why=explain(data, rec.item_id, history),
                score=round(rec.score, 4),
            )
        )
    return rows


def recommendations_frame(rows: list[RecommendationRow]) -> pd.DataFrame:
    values = [[r.rank, r.item_id, r.text, r.sid, r.descriptors, r.quality, r.why, r.score] for r in rows]
    return pd.DataFrame(values, columns=RECOMMENDATION_COLUMNS)


def summary(data: SpaceData, history: list[str], rows: list[RecommendationRow], user: HeldOutUser | None) -> str:
    """One Markdown paragraph above the table: what was ranked and, for a test user, where the held-out item is."""
    text = f"Top {len(rows)} of {len(data.items):,} catalogue items for a history of {len(history)} item(s)."
    if user is not None and tuple(history) == user.history:
        ranks = [r.rank for r in rows if r.item_id == user.target]
        where = f"ranked **{ranks[0]}**" if ranks else f"not in the top {len(rows)}"
        text += f" Held-out next item of user `{user.user_id}`: `{user.target}` — {where}."
    return text
