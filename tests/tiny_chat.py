"""Tiny random-weight chat models built from config, for the mining tests (no download, seconds to build).

A Llama with a byte-level BPE tokenizer (any text encodes), ChatML special tokens, an `<image>` token and a chat
template that also renders multimodal message parts. Two vocabularies: BPE merges trained on the mining prompts
(short prompts, fast tests) or none (one byte, one token: prompt lengths are predictable, e.g. for context limits).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>", "<image>"]


def tiny_chat_tokenizer(*, trained: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML tokens and `CHAT_TEMPLATE`; `trained`: merges learned from the
    DCIM/MLIM prompts (vocabulary of 400), else none (each byte is one token)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if trained:
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
        )
        corpus = [DEFAULT_TEMPLATES.dcim_system, *(e.answer(reasoning=True) for e in DEFAULT_TEMPLATES.examples)]
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.train_from_iterator(corpus * 3, trainer)
    else:
        vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *alphabet])}
        bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        bpe.add_special_tokens(SPECIAL_TOKENS)
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<image>"},
    )


def tiny_text_config(tokenizer: PreTrainedTokenizerFast, *, max_position_embeddings: int = 2048) -> LlamaConfig:
    """A two-layer, 32-wide Llama config over `tokenizer`'s vocabulary."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def tiny_chat_lm(
    tokenizer: PreTrainedTokenizerFast, *, seed: int = 0, max_position_embeddings: int = 2048
) -> LlamaForCausalLM:
    """Random weights from `seed` (different seeds answer differently), in eval mode."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_text_config(tokenizer, max_position_embeddings=max_position_embeddings)).eval()


def build_tiny_chat_model(
    folder: Path, *, trained: bool = True, seed: int = 0, max_position_embeddings: int = 2048
) -> Path:
    """Save a tiny chat model and its tokenizer to `folder`, loadable by `LocalBackend(folder)` and the chat
    server like any model."""
    tokenizer = tiny_chat_tokenizer(trained=trained)
    tiny_chat_lm(tokenizer, seed=seed, max_position_embeddings=max_position_embeddings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llava():
    """(model, processor): a LLaVA with a one-layer CLIP tower and the tiny chat LM, random weights, built from
    config (the image-text-to-text branch of the miners, without downloading anything)."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor
    tokenizer = tiny_chat_tokenizer()
    processor = LlavaProcessor(
        image_processor=ImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=tiny_text_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(config), processor
