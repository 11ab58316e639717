"""SID tokens in a causal LM's tokenizer: add them, resize the model, and map item codes to token ids."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from deepinterestgr.errors import DataError
from deepinterestgr.sid.semantic_ids import SemanticIDMap

SPECIAL_TOKENS = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


def sid_only_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer with special tokens only, for recommenders trained from scratch on SID sequences.

    SID tokens are added to it like to any other tokenizer; prompts are pure SID strings (whitespace-split).
    """
    vocab = {token: n for n, token in enumerate(SPECIAL_TOKENS.values())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)


def add_sid_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sid_map: SemanticIDMap) -> int:
    """Add every SID token as a normal token (TRL decodes completions with `skip_special_tokens=True`), resize the
    embeddings, and make pad/eos consistent in tokenizer, config and generation config. Returns tokens added.

    New rows are drawn from a normal with the mean and covariance of the existing embeddings (transformers'
    `mean_resizing`), so a pretrained backbone starts with SID tokens that look like its own tokens.
    """
    added = tokenizer.add_tokens(sid_map.vocabulary(), special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        pretrained = model.get_input_embeddings().weight.shape[0] > len(SPECIAL_TOKENS) + 1
        model.resize_token_embeddings(len(tokenizer), mean_resizing=pretrained)
    for config in (model.config, model.generation_config):
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            config.bos_token_id = tokenizer.bos_token_id
    return added


def sid_paths(sid_map: SemanticIDMap, tokenizer: PreTrainedTokenizerBase) -> torch.LongTensor:
    """(n_items, L + 2) token ids of each item's full SID followed by EOS; -1 pads items without a suffix."""
    vocab = sid_map.vocabulary()
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(vocab), dtype=torch.long)
    unknown = (ids == tokenizer.unk_token_id).nonzero() if tokenizer.unk_token_id is not None else ids[:0]
    if len(unknown):
        raise DataError(f"SID token {vocab[int(unknown[0])]} is not in the tokenizer; call add_sid_tokens first")
    levels, size = sid_map.num_levels, sid_map.codebook_size
    codes = torch.from_numpy(sid_map.codes)
    suffix = torch.from_numpy(sid_map.suffix)
    paths = torch.full((len(sid_map), levels + 2), -1, dtype=torch.long)
    for level in range(levels):  # a loop over the L levels, not over items
        paths[:, level] = ids[level * size + codes[:, level]]
    has_suffix = suffix >= 0
    paths[:, levels] = tokenizer.eos_token_id  # EOS right after the codes, unless the item has a suffix
    paths[has_suffix, levels] = ids[levels * size + suffix[has_suffix]]  # none at all when every SID is unique
    paths[has_suffix, levels + 1] = tokenizer.eos_token_id
    return paths
