"""The embed stage: enriched text (+ collaborative signal) -> the `embedding` column that is quantized."""

from __future__ import annotations

from typing import Literal

import numpy as np
from datasets import Dataset

from deepinterestgr.embedding.collaborative import collaborative_embeddings
from deepinterestgr.embedding.text import TEXT_COLUMNS, embed_texts, item_text

Collaborative = Literal["auto", "on", "off"]
THIN_TEXT_RATIO = 0.95  # below this share of distinct texts per item, text alone cannot give distinct SIDs


def wants_collaborative(texts: list[str], mode: Collaborative) -> bool:
    """`auto` fuses the collaborative signal when many items share the same text."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"collaborative must be 'auto', 'on' or 'off', got {mode!r}")
    if mode == "auto":
        return len(set(texts)) < THIN_TEXT_RATIO * len(texts)
    return mode == "on"


def embed_items(
    items: Dataset,
    train_sequences: list[list[str]] | None = None,
    *,
    model: str | None = None,
    batch_size: int = 128,
    collaborative: Collaborative = "auto",
    collaborative_dim: int = 128,
    collaborative_weight: float = 2.0,
    seed: int = 42,
    show_progress: bool = True,
) -> Dataset:
    """Add `embedding_text`, `text_embedding` and `embedding` (plus `collaborative_embedding` when fused).

    `embedding` is `[text; w * collaborative]` when the collaborative signal is used, else the text embedding.
    The collaborative part is learned from `train_sequences` only (the train split), never from valid/test.
    """
    rows = items.select_columns([c for c in items.column_names if c in TEXT_COLUMNS])
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
