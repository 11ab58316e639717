"""`loss_mean: dataset`: with length-grouped batches every loss token weighs the same in every step, for TRL's loss
and for the catalogue softmax; `batch` keeps the Trainer's per-step mean."""

import pytest
import torch
from datasets import Dataset

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender.backbone import load_backbone
from deepinterestgr.recommender.sft import RecommenderSFTArguments, sft_trainer_class, train_recommender, trl_config
from deepinterestgr.recommender.tasks import build_sft_dataset
from deepinterestgr.recommender.tokens import add_sid_tokens
from tests.test_recommender import TINY, catalogue, synthetic_sequences


def uneven_sequences(sid_map) -> list[list[str]]:
    """Histories of 2 to 8 items, so that length-grouped steps differ in their token counts."""
    return [seq[: 2 + n % 7] for n, seq in enumerate(synthetic_sequences(sid_map, users=64))]


def trainer_for(tmp_path, loss_mean: str, sid_softmax: str):
    sid_map = catalogue(suffix="item")
    args = RecommenderSFTArguments(
        backbone=TINY, epochs=1, batch_size=8, seed=0, sid_softmax=sid_softmax, loss_mean=loss_mean
    )
    model, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(model, tokenizer, sid_map)
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    dataset = build_sft_dataset(uneven_sequences(sid_map), items, sid_map, tasks=args.tasks, seed=0)
    trainer_class, extra = sft_trainer_class(args, model, tokenizer, sid_map)
    return trainer_class(
        model=model, args=trl_config(args, tmp_path), train_dataset=dataset, processing_class=tokenizer, **extra
    )


@pytest.mark.parametrize("sid_softmax", ["vocabulary", "catalogue"])
@torch.no_grad()
def test_every_token_weighs_the_same_in_every_step(tmp_path, sid_softmax):
    weights = {}
    for loss_mean in ("batch", "dataset"):
        trainer = trainer_for(tmp_path / loss_mean, loss_mean, sid_softmax)
        trainer.model.eval()  # dropout off: the two calls below must see the same forward pass
        device = trainer.args.device
        steps, rows, tokens = [], 0, 0
        for batch in trainer.get_train_dataloader():
            batch = trainer._prepare_inputs(batch)
            count = int(batch["labels"][:, 1:].ne(-100).sum())
            rows, tokens = rows + len(batch["labels"]), tokens + count
            divisor = trainer._get_num_items_in_batch([batch], device)
            summed = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(1, device=device))
            mean = trainer.compute_loss(trainer.model, batch, num_items_in_batch=divisor)
            steps.append((count, len(batch["labels"]), float(mean / summed)))  # the weight of each of its tokens
        assert len({count for count, _, _ in steps}) > 1  # grouped steps really differ in length
        weights[loss_mean] = steps
        if loss_mean == "dataset":
            assert trainer.tokens_per_example == pytest.approx(tokens / rows)
    for count, _, weight in weights["batch"]:  # a step's own count
        assert weight == pytest.approx(1 / count, rel=1e-4)
    for _, examples, weight in weights["dataset"]:  # one constant per example, whatever the step's length
        assert weight == pytest.approx(1 / (trainer.tokens_per_example * examples), rel=1e-4)


def test_dataset_mean_trains(tmp_path):
    sid_map = catalogue(suffix="item")
    before, _ = load_backbone(TINY, seed=0)
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    args = RecommenderSFTArguments(
        backbone=TINY, epochs=3, learning_rate=3e-3, batch_size=8, logging_steps=2, seed=0, loss_mean="dataset"
    )
    result = train_recommender(uneven_sequences(sid_map), items, sid_map, args, tmp_path)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert all(map(torch.isfinite, torch.tensor(losses))) and sum(losses[-3:]) < sum(losses[:3])
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(before.state_dict()[name], result.recommender.model.state_dict()[name])


def test_loss_mean_is_validated():
    with pytest.raises(ConfigError, match=r"loss_mean must be one of batch, dataset, got 'token'"):
        RecommenderSFTArguments(loss_mean="token")
