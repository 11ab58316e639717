"""The quantize stage: train the RQ-VAE on the `embedding` column, assign codes, add the `sid` column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import Dataset

from deepinterestgr.errors import DataError
from deepinterestgr.sid.configuration_rqvae import RQVAEConfig
from deepinterestgr.sid.semantic_ids import SemanticIDMap, SuffixKind
from deepinterestgr.sid.tokenizer import SemanticIDTokenizer
from deepinterestgr.sid.train import RQVAETrainingArguments, train_rqvae


def quantize_items(
    items: Dataset,
    *,
    config: RQVAEConfig | None = None,
    args: RQVAETrainingArguments | None = None,
    embedding_column: str = "embedding",
    image_column: str | None = None,
    aux_column: str | None = None,
    checkpoint_dir: str | Path | None = None,
    suffix: SuffixKind = "collision",
) -> tuple[Dataset, SemanticIDTokenizer]:
    """Items with an `sid` column (L codes, plus a suffix code for colliding items or for every item, see
    `SemanticIDMap.from_codes`) and the trained tokenizer."""
    for column in (embedding_column, image_column, aux_column):
        if column and column not in items.column_names:
            raise DataError(f"items have no {column!r} column; run `deepinterestgr embed` first")
    embeddings = np.asarray(items[embedding_column], dtype=np.float32)
    if config is None:
        config = RQVAEConfig(input_dim=embeddings.shape[1])
    image = np.asarray(items[image_column], dtype=np.float32) if image_column else None
    aux = np.asarray(items[aux_column], dtype=np.float32) if aux_column else None
    result = train_rqvae(
        embeddings, config, args, image_embeddings=image, aux_targets=aux, checkpoint_dir=checkpoint_dir
    )
    sid_map = SemanticIDMap.from_codes(
        items["item_id"], result.codes, codebook_size=config.codebook_size, suffix=suffix
    )
    result.report["suffix_size"] = sid_map.suffix_size
    result.report["suffix"] = suffix
    tokenizer = SemanticIDTokenizer(result.model, sid_map, result.report)
    sids = [list(sid_map.codes_of(item)) for item in items["item_id"]]
    if "sid" in items.column_names:
        items = items.remove_columns("sid")
    return items.add_column("sid", sids), tokenizer
