"""The SID explorer tab: the code tree level by level, the items under a prefix, and the collisions.

A prefix is a tuple of codes from level 1 down; level L + 1 is the suffix (`<d_k>` for 3 levels), which only items
sharing all L codes have (collision suffixes) or every item has (per-item suffixes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepinterestgr.sid.semantic_ids import LEVEL_LETTERS, TOKEN_RE, SemanticIDMap
from deepinterestgr.space.data import MISSING, InputError, SpaceData

MAX_PREFIX_CHARS = 200
MAX_LISTED_ITEMS = 100
MAX_LISTED_COLLISIONS = 50
MAX_SUFFIXES_SHOWN = 8

CHILD_COLUMNS = ["code", "items", "next codes", "collided items"]
ITEM_COLUMNS = ["item_id", "SID", "item", "quality"]
COLLISION_COLUMNS = ["codes", "items", "suffixes"]

_NUMBERS = re.compile(r"[\s,;/]+")


def prefix_tokens(codes: tuple[int, ...] | list[int]) -> str:
    """`(12, 5)` -> `<a_12><b_5>`."""
    return "".join(f"<{LEVEL_LETTERS[level]}_{int(code)}>" for level, code in enumerate(codes))


def _full_codes(sid_map: SemanticIDMap) -> np.ndarray:
    """(n_items, L + 1): the L codes, then the suffix (-1 for items without one)."""
    return np.concatenate([sid_map.codes, sid_map.suffix[:, None]], axis=1)


def parse_prefix(sid_map: SemanticIDMap, text: str | None) -> tuple[int, ...]:
    """A prefix typed as tokens (`<a_12><b_5>`) or numbers (`12 5`, `12,5`, `12/5`); empty means the root."""
    text = (text or "").strip()
    if len(text) > MAX_PREFIX_CHARS:
        raise InputError(f"the prefix has {len(text)} characters; at most {MAX_PREFIX_CHARS}")
    if not text:
        return ()
    if "<" in text:
        pairs = TOKEN_RE.findall(text)
        if "".join(f"<{a}_{c}>" for a, c in pairs) != text.replace(" ", ""):
            raise InputError(f"{text!r} is not a SID prefix: write tokens like <a_12><b_5>, or numbers like 12 5")
        letters = "".join(a for a, _ in pairs)
        if letters != LEVEL_LETTERS[: len(pairs)]:
            raise InputError(f"{text!r}: the levels must start at <a_..> and go in order (a, b, c, ...)")
        codes = tuple(int(c) for _, c in pairs)
    else:
        parts = [p for p in _NUMBERS.split(text) if p]
        if not all(p.isdigit() for p in parts):
            raise InputError(f"{text!r} is not a SID prefix: write tokens like <a_12><b_5>, or numbers like 12 5")
        codes = tuple(int(p) for p in parts)
    levels = sid_map.num_levels
    if len(codes) > levels + 1:
        raise InputError(f"a prefix has at most {levels + 1} codes ({levels} levels + the suffix)")
    for level, code in enumerate(codes):
        size = sid_map.codebook_size if level < levels else sid_map.suffix_size
        if code >= size:
            what = f"level {level + 1}" if level < levels else "the suffix"
            raise InputError(f"code {code} at {what} is out of range: {what} has codes 0..{size - 1}")
    return codes


def _under(full: np.ndarray, prefix: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the items whose codes start with `prefix`."""
    if not prefix:
        return np.ones(len(full), dtype=bool)
    return (full[:, : len(prefix)] == np.asarray(prefix)).all(axis=1)


@dataclass(frozen=True)
class Child:
    code: int
    token: str  # the full prefix down to this code, e.g. <a_12><b_5>
    items: int
    next_codes: int  # distinct codes one level further down
    collided: int  # items under it that needed a suffix


def children(sid_map: SemanticIDMap, prefix: tuple[int, ...]) -> list[Child]:
    """The codes one level below `prefix` (level L + 1: the suffixes), with item counts, by code."""
    full = _full_codes(sid_map)
    level = len(prefix)
    if level > sid_map.num_levels:
        return []
    rows = full[_under(full, prefix)]
    rows = rows[rows[:, level] >= 0]  # at level L + 1, items without a suffix end at level L
    out = []
    for code in np.unique(rows[:, level]).tolist():
        group = rows[rows[:, level] == code]
        below = group[:, level + 1] if level + 1 <= sid_map.num_levels else np.empty(0, dtype=np.int64)
        out.append(
            Child(
                code=code,
                token=prefix_tokens((*prefix, code)),
                items=len(group),
                next_codes=len(np.unique(below[below >= 0])),
                collided=int((group[:, -1] >= 0).sum()),
            )
        )
    return out


def children_frame(children_: list[Child]) -> pd.DataFrame:
    rows = [[c.token, c.items, c.next_codes, c.collided] for c in children_]
    return pd.DataFrame(rows, columns=CHILD_COLUMNS)


def items_under(data: SpaceData, prefix: tuple[int, ...], *, limit: int = MAX_LISTED_ITEMS) -> tuple[pd.DataFrame, int]:
    """The first `limit` items under `prefix` in code order, and how many there are in all."""
    sid_map = data.sid_map
    full = _full_codes(sid_map)
    rows = np.flatnonzero(_under(full, prefix))
    ordered = rows[np.lexsort(full[rows].T[::-1])][:limit]
    table = []
    for row in ordered.tolist():
        item_id = sid_map.item_ids[row]
        info = data.items[item_id]
        quality = MISSING if info.quality is None else f"{info.quality:.2f}"
        table.append([item_id, sid_map.tokens_of(item_id), info.text, quality])
    return pd.DataFrame(table, columns=ITEM_COLUMNS), len(rows)


@dataclass(frozen=True)
class Collision:
    codes: str  # the L shared codes as tokens
    items: int
    suffixes: list[tuple[str, str]]  # (item_id, suffix token)


def collisions(sid_map: SemanticIDMap, prefix: tuple[int, ...] = ()) -> list[Collision]:
    """L-code tuples shared by several items under `prefix`, largest first, with each item's suffix token."""
    full = _full_codes(sid_map)
    rows = np.flatnonzero(_under(full, prefix) & (full[:, -1] >= 0))
    if not len(rows):
        return []
    levels = sid_map.num_levels
    tuples, inverse, counts = np.unique(full[rows, :levels], axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    suffix_letter = LEVEL_LETTERS[levels]
    out = []
    for group in np.argsort(-counts, kind="stable").tolist():
        if counts[group] < 2:  # per-item suffixes: a tuple of one item is no collision
            break
        members = rows[inverse == group]
        members = members[np.argsort(full[members, -1])]
        out.append(
            Collision(
                codes=prefix_tokens(tuples[group].tolist()),
                items=int(counts[group]),
                suffixes=[(sid_map.item_ids[m], f"<{suffix_letter}_{full[m, -1]}>") for m in members.tolist()],
            )
        )
    return out


def collisions_frame(found: list[Collision], *, limit: int = MAX_LISTED_COLLISIONS) -> pd.DataFrame:
    rows = []
    for c in found[:limit]:
        shown = ", ".join(f"{item} {token}" for item, token in c.suffixes[:MAX_SUFFIXES_SHOWN])
        more = len(c.suffixes) - MAX_SUFFIXES_SHOWN
        rows.append([c.codes, c.items, shown + (f", +{more} more" if more > 0 else "")])
    return pd.DataFrame(rows, columns=COLLISION_COLUMNS)


def overview(sid_map: SemanticIDMap) -> str:
    """Markdown counts of the whole map: items, levels, codes in use, distinct tuples, collisions."""
    levels = sid_map.num_levels
    used = [len(np.unique(sid_map.codes[:, level])) for level in range(levels)]
    tuples, counts = np.unique(sid_map.codes, axis=0, return_counts=True)
    shared = counts[counts > 1]
    return (
        f"**{len(sid_map):,} items**, {levels} levels of {sid_map.codebook_size} codes "
        f"(in use per level: {', '.join(map(str, used))}); {len(tuples):,} distinct {levels}-code tuples, "
        f"{len(shared):,} shared by several items ({int((sid_map.suffix >= 0).sum()):,} items carry a suffix "
        f"`<{LEVEL_LETTERS[levels]}_k>`, at most {int(counts.max()) if len(counts) else 0} items per tuple)."
    )


@dataclass(frozen=True)
class Exploration:
    """One view of the explorer: where we are, what is below, the items and the collisions under it."""

    prefix: tuple[int, ...]
    heading: str
    children: list[Child]
    items: pd.DataFrame
    total_items: int
    collisions: list[Collision]


def explore(data: SpaceData, prefix_text: str | None) -> Exploration:
    """The view of the prefix typed or picked on the page (empty: the root, i.e. the level-1 codes)."""
    sid_map = data.sid_map
    prefix = parse_prefix(sid_map, prefix_text)
    below = children(sid_map, prefix)
    items, total = items_under(data, prefix)
    if total == 0:
        raise InputError(f"no item has a SID starting with {prefix_tokens(prefix)}; go up a level")
    level = len(prefix) + 1
    if level <= sid_map.num_levels:
        what = f"{len(below)} level-{level} code(s)"
    elif level == sid_map.num_levels + 1:
        kind = "item" if sid_map.per_item_suffix else "collision"
        what = f"{len(below)} {kind} suffix(es)" if below else "a unique tuple (no suffix needed)"
    else:
        what = "one item"
    where = prefix_tokens(prefix) if prefix else "the root"
    heading = f"Under {where}: {total:,} item(s), {what}."
    return Exploration(prefix, heading, below, items, total, collisions(sid_map, prefix))
