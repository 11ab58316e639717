"""Embedding stage: item text (and interactions) -> the vector each item is quantized from."""

from deepinterestgr.embedding.collaborative import collaborative_embeddings
from deepinterestgr.embedding.text import DEFAULT_TEXT_ENCODER, embed_texts, item_text, resolve_text_encoder

__all__ = ["DEFAULT_TEXT_ENCODER", "collaborative_embeddings", "embed_texts", "item_text", "resolve_text_encoder"]
