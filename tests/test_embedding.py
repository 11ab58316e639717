"""Embedding stage: enriched text, the offline MiniLM encoder (a real model), collaborative vectors."""

import numpy as np
import pytest

from deepinterestgr.data import load_sample
from deepinterestgr.embedding import collaborative_embeddings, embed_texts, item_text
from deepinterestgr.embedding.stage import embed_items, wants_collaborative


def test_item_text_order_and_missing_fields():
    row = {
        "title": "Lip balm",
        "brand": None,
        "categories": ["Makeup", "Lips"],
        "description": "x" * 1000,
        "descriptors": ["gift for hikers", "cheap"],
        "descriptor_confidences": [0.9, 0.2],
    }
    text = item_text(row, max_description_chars=5)
    assert text == "Title: Lip balm. Categories: Makeup > Lips. Description: xxxxx. Interests: gift for hikers, cheap."


def test_offline_minilm_embeds_and_dedupes():
    texts = [
        "Brand: OPI. Categories: Makeup > Nails.",
        "Categories: Skin Care.",
        "Brand: OPI. Categories: Makeup > Nails.",
    ]
    vectors = embed_texts(texts, show_progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_collaborative_vectors_follow_co_occurrence():
    # a and b are bought around x, c and d around y: items in the same company get similar vectors
    items = ["a", "b", "c", "d", "x", "y", "cold"]
    train = [["a", "x", "b"], ["b", "x", "a"], ["x", "a"], ["c", "y", "d"], ["d", "y", "c"], ["y", "d"]] * 3
    vectors = collaborative_embeddings(items, train, dim=4, window=1)
    assert vectors.shape == (7, 4)
    assert np.all(vectors[6] == 0)  # never in training
    sim = vectors @ vectors.T
    assert sim[0, 1] > 0.9 and sim[2, 3] > 0.9
    assert sim[0, 2] < 0.1 and sim[1, 3] < 0.1


def test_collaborative_switch():
    assert wants_collaborative(["x", "x", "y", "z"], "auto")
    assert not wants_collaborative(["x", "y", "z"], "auto")
    assert wants_collaborative(["x", "y"], "on") and not wants_collaborative(["x", "x"], "off")
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        wants_collaborative(["x"], "maybe")


def test_embed_items_on_the_sample_fuses_when_text_is_thin():
    data = load_sample()
    items = data.items.select(range(300))
    out = embed_items(items, data.splits["train"]["item_ids"], collaborative_dim=16, show_progress=False)
    assert {"embedding_text", "text_embedding", "collaborative_embedding", "embedding"} <= set(out.column_names)
    assert len(out[0]["embedding"]) == 384 + 16
    text_only = embed_items(items, collaborative="off", show_progress=False)
    assert "collaborative_embedding" not in text_only.column_names and len(text_only[0]["embedding"]) == 384
