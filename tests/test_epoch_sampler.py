"""Length-grouped SFT batches are seeded per epoch: an interrupted and resumed run ends with the same weights."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from deepinterestgr.recommender.backbone import BackboneConfig
from deepinterestgr.recommender.epoch_sampler import EpochSeededLengthGroupedSampler
from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
from deepinterestgr.sid import SemanticIDMap


def test_order_depends_on_seed_and_epoch_only():
    lengths = [int(n) for n in np.random.default_rng(0).integers(2, 40, size=200)]
    sampler = EpochSeededLengthGroupedSampler(8, lengths, seed=3)

    def order(epoch: int, draws: int) -> list[int]:
        torch.rand(draws)  # whatever else has drawn from the global RNG
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(0, 0)
    assert sorted(first) == list(range(200))
    assert order(0, 1000) == first
    assert order(1, 0) != first
    assert order(1, 5) == order(1, 0)
    assert list(EpochSeededLengthGroupedSampler(8, lengths, seed=4)) != first
    assert lengths[first[0]] == max(lengths)  # still grouped: the longest example leads, as transformers' sampler


class Interrupt(TrainerCallback):
    """Stops training by raising at `step`, as a killed job would (after the checkpoint of an earlier step)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("hidden_dropout", [0.0, 0.2])
def test_resumed_grouped_run_matches_the_uninterrupted_run(tmp_path, hidden_dropout):
    rng = np.random.default_rng(0)
    item_ids = [f"item{i}" for i in range(30)]
    sid_map = SemanticIDMap.from_codes(item_ids, rng.integers(0, 4, (30, 2)), codebook_size=4)
    sequences = [list(rng.choice(item_ids, size=int(rng.integers(2, 12)))) for _ in range(64)]
    items = Dataset.from_dict({"item_id": item_ids})
    args = RecommenderSFTArguments(
        backbone=BackboneConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        epochs=3, batch_size=8, save_steps=10, group_by_length=True, hidden_dropout=hidden_dropout, seed=0,
    )  # fmt: skip  # 8 steps an epoch: the checkpoint of step 10 lies inside the second epoch

    straight = train_recommender(sequences, items, sid_map, args, tmp_path / "straight").recommender
    with pytest.raises(KeyboardInterrupt):
        train_recommender(sequences, items, sid_map, args, tmp_path / "resumed", callbacks=[Interrupt(12)])
    assert (tmp_path / "resumed/checkpoints/checkpoint-10").is_dir()
    resumed = train_recommender(sequences, items, sid_map, args, tmp_path / "resumed").recommender

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
