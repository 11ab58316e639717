"""Recommender backbones: a small Llama built from config (trained from scratch) or any pretrained causal LM."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender.tokens import sid_only_tokenizer

SCRATCH = "scratch-llama"


@dataclass
class BackboneConfig:
    """Which causal LM generates the SIDs."""

    name: str = field(default=SCRATCH, metadata={"help": "`scratch-llama`, a Hub id or a local folder."})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside `name` (e.g. SmolLM2)."})
    hidden_size: int = field(default=128, metadata={"help": "scratch-llama: width."})
    num_layers: int = field(default=2, metadata={"help": "scratch-llama: decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "scratch-llama: attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "scratch-llama: MLP width."})
    dropout: float = field(default=0.1, metadata={"help": "scratch-llama: attention dropout."})
    max_positions: int = field(default=1024, metadata={"help": "scratch-llama: longest prompt + completion."})


def load_backbone(config: BackboneConfig, *, seed: int = 42) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) for `config`; SID tokens are added later by `add_sid_tokens`."""
    if config.name == SCRATCH:
        import torch

        tokenizer = sid_only_tokenizer()
        llama = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads,
            max_position_embeddings=config.max_positions,
            attention_dropout=config.dropout,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        torch.manual_seed(seed)
        return LlamaForCausalLM(llama), tokenizer
    kwargs = {"gguf_file": config.gguf_file} if config.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(config.name, **kwargs)
    except OSError as err:
        raise ConfigError(
            f"backbone {config.name!r} could not be loaded ({err}); use `scratch-llama`, a local folder, "
            "or a Hub id on a machine that can reach the Hub"
        ) from None
    return model, tokenizer
