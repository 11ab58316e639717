"""`loss_mean: dataset`: every loss token weighs the same, whatever the batch it falls in.

transformers' Trainer (and so TRL) divides each step's summed token loss by that step's own token count. With
length-grouped batches (`group_by_length`, 2.6x faster per epoch on Beauty) a step of 3-item sequences (5 loss
tokens each with per-item suffixes) then gives each of its tokens up to 8x the weight of a token in a step of
21-item sequences (41 each): each training sequence weighs about the same, and a long history's transitions count
for less than a short one's. SASRec and TIGER train on random batches, where every transition weighs the same.
Dividing every step's sum by one constant, the expected token count of a step over the training set, restores that
weighting and keeps the speed of grouped batches.
"""

from __future__ import annotations

import torch

from deepinterestgr.errors import ConfigError


class DatasetTokenMean:
    """Mixin for a transformers/TRL trainer (put it first in the bases): the loss of a step is its summed token
    loss over the expected token count of a step, not over its own count."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.model_accepts_loss_kwargs:
            raise ConfigError(
                f"loss_mean: dataset needs a model whose loss takes `num_items_in_batch`, and "
                f"{type(self.model).__name__} does not; use loss_mean: batch"
            )
        labels = self.train_dataset["labels"]
        # as the Trainer counts a causal LM's loss tokens: labels[1:] that are not -100
        self.tokens_per_example = sum(sum(t != -100 for t in row[1:]) for row in labels) / max(len(labels), 1)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | int | None:
        counted = super()._get_num_items_in_batch(batch_samples, device)
        if counted is None:
            return None
        rows = sum(len(batch["labels"]) for batch in batch_samples)
        local = sum(batch["labels"][..., 1:].ne(-100).sum() for batch in batch_samples)  # a tensor: no device sync
        # exact on one process; across ranks the gathered count is rescaled by this rank's expected/own ratio
        return counted * (self.tokens_per_example * rows / local.clamp(min=1))


def with_dataset_token_mean(trainer_class: type) -> type:
    """`trainer_class` with `DatasetTokenMean` mixed in (a subclass, so its own loss is untouched)."""
    return type(f"DatasetTokenMean{trainer_class.__name__}", (DatasetTokenMean, trainer_class), {})
