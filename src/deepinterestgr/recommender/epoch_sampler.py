"""Length-grouped batches whose order depends on the seed and the epoch only, so a resumed SFT run replays it.

transformers' `LengthGroupedSampler` draws each epoch's order from the global torch RNG. A run resumed inside an
epoch draws that order before the Trainer restores the checkpoint's RNG state, so it sees other batches than the
uninterrupted run did, and its weights drift from it. accelerate reseeds random batches per epoch; this sampler
does the same for grouped ones: the order of epoch `e` is drawn from a generator seeded with `seed + e`.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose order of epoch `e` is a function of `(seed, e)`; the Trainer (through
    accelerate's `DataLoaderShard.set_epoch`) tells it the epoch."""

    def __init__(self, batch_size: int, lengths: list[int], *, seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed  # the run's seed; epoch e draws from seed + e
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class EpochSeededGrouping:
    """Mixin for a transformers/TRL trainer (put it first in the bases): its length-grouped sampler becomes an
    `EpochSeededLengthGroupedSampler` with the same batch size and lengths; other samplers are left as they are."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed=self.args.seed)
        return sampler


def with_epoch_seeded_grouping(trainer_class: type) -> type:
    """`trainer_class` with `EpochSeededGrouping` mixed in."""
    return type(f"EpochSeeded{trainer_class.__name__}", (EpochSeededGrouping, trainer_class), {})
