"""The embed stage: enriched text (+ collaborative signal) -> the `embedding` column that is quantized."""

from __future__ import annotations

from typing import Literal

import numpy as np
from datasets import Dataset

from deepinterestgr.embedding.collaborative import collaborative_embeddings
from deepinterestgr.embedding.text import TEXT_COLUMNS, embed_texts, item_text
from deepinterestgr.errors import ConfigError, DataError

Collaborative = Literal["auto", "on", "off"]
DescriptorUse = Literal["none", "all", "positive"]
THIN_TEXT_RATIO = 0.95  # below this share of distinct texts per item, text alone cannot give distinct SIDs


def wants_collaborative(texts: list[str], mode: Collaborative) -> bool:
    """`auto` fuses the collaborative signal when many items share the same text."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"collaborative must be 'auto', 'on' or 'off', got {mode!r}")
    if mode == "auto":
        return len(set(texts)) < THIN_TEXT_RATIO * len(texts)
    return mode == "on"


def _kept_descriptors(items: Dataset, use: DescriptorUse) -> list[list[str]]:
    if use not in ("none", "all", "positive"):
        raise ConfigError(f"descriptors must be 'none', 'all' or 'positive', got {use!r}")
    if use == "none" or "descriptors" not in items.column_names:
        return [[] for _ in range(len(items))]
    if use == "all":
        return [list(d or []) for d in items["descriptors"]]
    if "descriptor_labels" not in items.column_names:
        raise DataError("items: descriptors are not judged (no `descriptor_labels`); run `deepinterestgr judge`, "
                        "or embed with descriptors: all")  # fmt: skip
    return [
        [d for d, y in zip(ds or [], ys or [], strict=True) if y == 1]
        for ds, ys in zip(items["descriptors"], items["descriptor_labels"], strict=True)
    ]


def embed_items(
    items: Dataset,
    train_sequences: list[list[str]] | None = None,
    *,
    model: str | None = None,
    batch_size: int = 128,
    collaborative: Collaborative = "auto",
    collaborative_dim: int = 128,
    collaborative_weight: float = 2.0,
    descriptors: DescriptorUse = "positive",
    seed: int = 42,
    show_progress: bool = True,
) -> Dataset:
    """Add `embedding_text`, `text_embedding` and `embedding` (plus `collaborative_embedding` when fused).

    `embedding` is `[text; w * collaborative]` when the collaborative signal is used, else the text embedding.
    The collaborative part is learned from `train_sequences` only (the train split), never from valid/test.
    `descriptors`: which mined descriptors enrich the text: none, all, or only those the judge labelled 1.
    """
    rows = items.select_columns([c for c in items.column_names if c in TEXT_COLUMNS]).to_list()
    for row, kept in zip(rows, _kept_descriptors(items, descriptors), strict=True):
        row["descriptors"] = kept
    texts = [item_text(row) for row in rows]
    text_vectors = embed_texts(texts, model=model, batch_size=batch_size, show_progress=show_progress)
    items = items.add_column("embedding_text", texts).add_column("text_embedding", list(text_vectors))
    if not wants_collaborative(texts, collaborative):
        return items.add_column("embedding", list(text_vectors))
    if not train_sequences:
        raise ValueError("the collaborative signal needs the train split's sequences; pass train_sequences")
    collab = collaborative_embeddings(items["item_id"], train_sequences, dim=collaborative_dim, seed=seed)
    fused = np.concatenate([text_vectors, collaborative_weight * collab], axis=1).astype(np.float32)
    return items.add_column("collaborative_embedding", list(collab)).add_column("embedding", list(fused))
