"""RLDI: a lightweight classifier that labels mined descriptors positive/negative at the cost of embedding them.

An LLM judge (or the grounding score) labels a sample of (item, descriptor) pairs; a logistic regression on
sentence embeddings `[e_descriptor; e_item; e_descriptor * e_item]` learns those labels and then labels the rest of
the catalogue. Saved as safetensors + JSON (no pickle), so a shared classifier is safe to load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from deepinterestgr.embedding.text import embed_texts
from deepinterestgr.errors import DataError

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"


def pair_features(descriptor_vectors: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Features of (descriptor, item) pairs: both embeddings, their elementwise product (their agreement) and
    its sum (the cosine, as both are unit vectors)."""
    product = descriptor_vectors * item_vectors
    return np.concatenate([descriptor_vectors, item_vectors, product, product.sum(1, keepdims=True)], axis=1)


@dataclass
class DescriptorClassifier:
    """Logistic regression over standardized `pair_features`; `encoder` is the sentence-transformers model."""

    weight: np.ndarray  # (3 * dim + 1,)
    bias: float
    mean: np.ndarray  # feature standardization learned with the weights
    scale: np.ndarray
    encoder: str | None = None  # None: the default MiniLM (offline copy when installed)
    report: dict = field(default_factory=dict)  # training size, positive rate, held-out AUC

    @classmethod
    def fit(
        cls,
        descriptors: Sequence[str],
        item_texts: Sequence[str],
        labels: Sequence[int],
        *,
        encoder: str | None = None,
        regularization: float = 1.0,
        holdout: float = 0.2,
        seed: int = 42,
    ) -> DescriptorClassifier:
        """Train on judged pairs; `report["holdout_auc"]` is measured on a random `holdout` share left out."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        labels = np.asarray(labels)
        if not (len(descriptors) == len(item_texts) == len(labels)):
            raise DataError(f"{len(descriptors)} descriptors, {len(item_texts)} item texts, {len(labels)} labels")
        if set(np.unique(labels).tolist()) != {0, 1}:
            raise DataError("the classifier needs judged pairs of both labels (0 and 1) to learn from")
        features = pair_features(
            embed_texts(descriptors, model=encoder, show_progress=False),
            embed_texts(item_texts, model=encoder, show_progress=False),
        )
        mean, scale = features.mean(0), features.std(0) + 1e-6
        features = (features - mean) / scale
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = int(len(labels) * (1 - holdout))
        train, test = order[:cut], order[cut:]
        model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000)
        model.fit(features[train], labels[train])
        auc = None
        if len(set(labels[test].tolist())) == 2:
            auc = float(roc_auc_score(labels[test], model.decision_function(features[test])))
        model.fit(features, labels)  # the saved model learns from every judged pair
        report = {"pairs": len(labels), "positive_rate": float(labels.mean()), "holdout_auc": auc}
        weight, bias = model.coef_[0].astype(np.float32), float(model.intercept_[0])
        return cls(weight, bias, mean.astype(np.float32), scale.astype(np.float32), encoder, report)

    def predict_proba(self, descriptors: Sequence[str], item_texts: Sequence[str]) -> np.ndarray:
        """P(label = 1) of each (descriptor, item text) pair."""
        if not descriptors:
            return np.zeros(0, dtype=np.float32)
        features = pair_features(
            embed_texts(descriptors, model=self.encoder, show_progress=False),
            embed_texts(item_texts, model=self.encoder, show_progress=False),
        )
        if features.shape[1] != self.weight.shape[0]:
            raise DataError(
                f"the classifier was trained on {(self.weight.shape[0] - 1) // 3}-d embeddings but the encoder gives "
                f"{(features.shape[1] - 1) // 3}-d; use the encoder it was trained with ({self.encoder or 'default'})"
            )
        logits = ((features - self.mean) / self.scale) @ self.weight + self.bias
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"weight": self.weight, "bias": np.asarray([self.bias], dtype=np.float32)}
        save_file({**tensors, "mean": self.mean, "scale": self.scale}, folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps({"encoder": self.encoder, "report": self.report}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DescriptorClassifier:
        folder = Path(folder)
        if not (folder / WEIGHTS_FILE).is_file():
            raise DataError(f"{folder}: no {WEIGHTS_FILE} here; train one with `deepinterestgr judge`")
        tensors = load_file(folder / WEIGHTS_FILE)
        config = json.loads((folder / CONFIG_FILE).read_text())
        bias = float(tensors["bias"][0])
        return cls(tensors["weight"], bias, tensors["mean"], tensors["scale"], config["encoder"], config["report"])
