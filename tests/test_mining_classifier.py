"""RLDI classifier on real MiniLM embeddings: learns judge labels, round-trips through safetensors."""

import numpy as np
import pytest

from deepinterestgr.data import load_sample
from deepinterestgr.errors import DataError
from deepinterestgr.mining.classifier import DescriptorClassifier


@pytest.fixture(scope="module")
def judged_pairs():
    """Positive: a category name of the item itself; negative: a category of an item from another top-level
    category (what a judge calls grounded vs. not, in the simplest form real data offers here)."""
    items = load_sample().items.filter(lambda r: len(r["categories"]) >= 3).select(range(300))
    rng = np.random.default_rng(0)
    descriptors, texts, labels = [], [], []
    for n, row in enumerate(items):
        text = f"Brand: {row['brand']}. Categories: {' > '.join(row['categories'])}."
        descriptors.append(row["categories"][-1].lower())
        texts.append(text)
        labels.append(1)
        other = items[int(rng.integers(len(items)))]
        if other["categories"][1] != row["categories"][1]:
            descriptors.append(other["categories"][-1].lower())
            texts.append(text)
            labels.append(0)
        if n % 2:
            descriptors.append("a great gift for anyone")  # generic: not grounded in this item
            texts.append(text)
            labels.append(0)
    return descriptors, texts, labels


def test_classifier_learns_and_round_trips(judged_pairs, tmp_path):
    descriptors, texts, labels = judged_pairs
    clf = DescriptorClassifier.fit(descriptors, texts, labels)
    assert clf.report["pairs"] == len(labels) and clf.report["holdout_auc"] > 0.85
    loaded = DescriptorClassifier.load(clf.save(tmp_path / "rldi"))
    probs = loaded.predict_proba(descriptors[:20], texts[:20])
    assert np.allclose(probs, clf.predict_proba(descriptors[:20], texts[:20]))
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))  # safetensors + JSON only


def test_classifier_bad_input():
    with pytest.raises(DataError, match="both labels"):
        DescriptorClassifier.fit(["a", "b"], ["x", "y"], [1, 1])
    with pytest.raises(DataError, match="2 descriptors, 1 item texts"):
        DescriptorClassifier.fit(["a", "b"], ["x"], [1, 0])
    with pytest.raises(DataError, match=r"no classifier\.safetensors here"):
        DescriptorClassifier.load("/nonexistent")
