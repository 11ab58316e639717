"""Semantic-ID tokenizer: RQ-VAE (a transformers `PreTrainedModel`) and the item <-> code map.

Importing this module registers the RQ-VAE with `AutoConfig` / `AutoModel`; saved folders also carry `auto_map`
and the model code, so `trust_remote_code=True` loads them without the package.
"""

from transformers import AutoConfig, AutoModel

from deepinterestgr.sid.configuration_rqvae import RQVAEConfig
from deepinterestgr.sid.modeling_rqvae import RQVAEModel, RQVAEOutput
from deepinterestgr.sid.report import sid_quality
from deepinterestgr.sid.semantic_ids import SemanticIDMap
from deepinterestgr.sid.tokenizer import SemanticIDTokenizer
from deepinterestgr.sid.train import RQVAETrainingArguments, RQVAETrainingResult, train_rqvae

AutoConfig.register(RQVAEConfig.model_type, RQVAEConfig, exist_ok=True)
AutoModel.register(RQVAEConfig, RQVAEModel, exist_ok=True)
RQVAEConfig.register_for_auto_class()
RQVAEModel.register_for_auto_class("AutoModel")

__all__ = [
    "RQVAEConfig",
    "RQVAEModel",
    "RQVAEOutput",
    "RQVAETrainingArguments",
    "RQVAETrainingResult",
    "SemanticIDMap",
    "SemanticIDTokenizer",
    "sid_quality",
    "train_rqvae",
]
