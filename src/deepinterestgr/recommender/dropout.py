"""Residual dropout for training decoders that have none (Llama, Qwen3): the regularizer SASRec relies on.

Llama-style configs only offer attention-probability dropout. On sparse interaction data (Amazon Beauty) a model
trained from scratch overfits within a few epochs without dropout on the embeddings and on each sublayer's
output before it joins the residual stream, as in the original Transformer. Forward hooks add it for the
duration of training only: nothing is saved with the model and inference is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from deepinterestgr.errors import ConfigError

SUBLAYERS = ("self_attn", "mlp")  # the two residual branches of a decoder layer


def _drop(p: float):
    def hook(module: nn.Module, _inputs, output):
        if not module.training:
            return output
        if isinstance(output, tuple):  # attention returns (hidden, weights)
            return (F.dropout(output[0], p, training=True), *output[1:])
        return F.dropout(output, p, training=True)

    return hook


@contextmanager
def residual_dropout(model: PreTrainedModel, p: float) -> Iterator[int]:
    """Dropout `p` on the input embeddings and on every attention/MLP output while the block runs; yields the
    number of places it was added. `p == 0` adds none."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"hidden_dropout must be in [0, 1), got {p}")
    handles = []
    if p > 0:
        targets = [model.get_input_embeddings()]
        targets += [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in SUBLAYERS]
        if len(targets) == 1:
            raise ConfigError(
                f"hidden_dropout: {type(model).__name__} has no `self_attn`/`mlp` sublayers to regularize; "
                "set hidden_dropout: 0 for this backbone"
            )
        handles = [m.register_forward_hook(_drop(p)) for m in targets]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
