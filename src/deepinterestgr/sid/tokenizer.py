"""`SemanticIDTokenizer`: the trained RQ-VAE plus the catalogue's `SemanticIDMap`, saved as one folder or Hub repo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from transformers.utils import cached_file

from deepinterestgr.sid.modeling_rqvae import RQVAEModel
from deepinterestgr.sid.semantic_ids import MAP_FILE, SemanticIDMap

REPORT_FILE = "sid_quality.json"


def _float_tensor(array) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(np.asarray(array, dtype=np.float32))


class SemanticIDTokenizer:
    """Item embeddings -> codes, and item ids <-> SID token strings."""

    def __init__(self, model: RQVAEModel, sid_map: SemanticIDMap, report: dict | None = None):
        sid_map.check_compatible(
            num_levels=model.config.num_levels, codebook_size=model.config.codebook_size, source="SemanticIDTokenizer"
        )
        self.model = model.eval()
        self.sid_map = sid_map
        self.report = report or {}

    def encode(self, embeddings: np.ndarray | torch.Tensor, image_embeddings=None) -> np.ndarray:
        """(n, L) codes of new embeddings (no collision suffix: that is a catalogue property)."""
        return self.model.get_codes(_float_tensor(embeddings), _float_tensor(image_embeddings)).numpy()

    def tokens_of(self, item_id: str) -> str:
        return self.sid_map.tokens_of(item_id)

    def item_for_tokens(self, text: str) -> str | None:
        return self.sid_map.item_for_tokens(text)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Model (safetensors + config with auto_map), `sid_map.json` and the quality report."""
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        self.sid_map.save(path / MAP_FILE)
        (path / REPORT_FILE).write_text(json.dumps(self.report, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None) -> SemanticIDTokenizer:
        """Load from a folder or a Hub repo id (optionally at a pinned `revision`)."""
        model = RQVAEModel.from_pretrained(name_or_path, revision=revision, use_safetensors=True)
        sid_map = SemanticIDMap.load(cached_file(str(name_or_path), MAP_FILE, revision=revision))
        report_path = cached_file(
            str(name_or_path), REPORT_FILE, revision=revision, _raise_exceptions_for_missing_entries=False
        )
        report = json.loads(Path(report_path).read_text()) if report_path else {}
        return cls(model, sid_map, report)
