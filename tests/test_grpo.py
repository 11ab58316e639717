"""GRPO on a tiny model: constrained rollouts are valid distinct SIDs, training changes parameters."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.recommender.arguments import BackboneConfig
from deepinterestgr.recommender.backbone import load_backbone
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tokens import add_sid_tokens
from deepinterestgr.rl.arguments import GRPOArguments
from deepinterestgr.rl.grpo import build_rewards, grpo_dataset, train_grpo
from deepinterestgr.sid import SemanticIDMap

TINY = BackboneConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0)


@pytest.fixture(scope="module", params=["collision", "item"])
def sft_dir(tmp_path_factory, request):
    """An untrained tiny recommender over 30 items, with collision suffixes and with per-item suffixes."""
    codes = np.random.default_rng(0).integers(0, 4, size=(30, 3))
    sid_map = SemanticIDMap.from_codes([f"i{n}" for n in range(30)], codes, codebook_size=4, suffix=request.param)
    model, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(model, tokenizer, sid_map)
    path = tmp_path_factory.mktemp("sft")
    GenerativeRecommender(model, tokenizer, sid_map, max_history=4).save_pretrained(path)
    return path


def data(sid_map: SemanticIDMap):
    rng = np.random.default_rng(1)
    train = Dataset.from_dict(
        {
            "user_id": [f"u{n}" for n in range(10)],
            "item_ids": [list(rng.choice(sid_map.item_ids, 5)) for _ in range(10)],
        }
    )
    items = Dataset.from_dict({"item_id": sid_map.item_ids, "quality": rng.random(len(sid_map)).tolist()})
    return train, items


@pytest.mark.parametrize("constrained", [True, False])
def test_five_grpo_steps_change_parameters_with_only_valid_rollouts(sft_dir, tmp_path, constrained):
    sid_map = SemanticIDMap.load(sft_dir)
    train, items = data(sid_map)
    args = GRPOArguments(
        constrained_policy=constrained,
        rewards=["exact", "valid", "prefix", "rank", "qarm"], group_size=4, prompts_per_step=2, epochs=1,
        learning_rate=1e-2, logging_steps=1, seed=0,
    )  # fmt: skip
    result = train_grpo(sft_dir, train, items, args, tmp_path)
    logs = [h for h in result.log_history if "rewards/valid/mean" in h]
    assert len(logs) == 5  # 10 prompts, 2 per step
    assert all(h["rewards/valid/mean"] == 1.0 for h in logs)  # every rollout decodes to a catalogue item
    assert all("rewards/qarm_bonus/mean" in h and "rewards/rank/mean" in h for h in logs)  # logged per component
    before = load_file(sft_dir / "model.safetensors")
    after = result.recommender.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    recs = result.recommender.recommend([["i1", "i2"]], k=4)[0]
    assert len({r.item_id for r in recs}) == 4 and all(r.item_id in sid_map for r in recs)


def test_rollouts_are_distinct_catalogue_sids(sft_dir):
    from deepinterestgr.recommender.tokens import sid_paths
    from deepinterestgr.rl.rollout import ConstrainedBeamRollout

    rec = GenerativeRecommender.from_pretrained(sft_dir)
    rollout = ConstrainedBeamRollout(rec.trie, sid_paths(rec.sid_map, rec.tokenizer), rec.tokenizer, group_size=6)
    prompts = rec.prompts([["i1", "i2"], ["i7"]])
    out = rollout.generate([prompts[0]] * 6 + [prompts[1]] * 6, rec.model)
    texts = rec.tokenizer.batch_decode(out["completion_ids"], skip_special_tokens=True)
    items = [rec.sid_map.item_for_tokens("".join(t.split())) for t in texts]
    assert None not in items and len(set(items[:6])) == 6 and len(set(items[6:])) == 6
    assert out["rollout_rank"] == list(range(6)) * 2
    assert all(
        len(lp) == len(ids) and max(lp) <= 0 for lp, ids in zip(out["logprobs"], out["completion_ids"], strict=True)
    )
    with pytest.raises(ConfigError, match="whole groups of 6"):
        rollout.generate([prompts[0]] * 5, rec.model)


def test_bad_grpo_settings_and_data(sft_dir):
    sid_map = SemanticIDMap.load(sft_dir)
    train, items = data(sid_map)
    with pytest.raises(ConfigError, match="unknown reward"):
        GRPOArguments(rewards=["exact", "bogus"])
    with pytest.raises(DataError, match="needs item quality"):
        build_rewards(GRPOArguments(), sid_map, items.remove_columns("quality"))
    with pytest.raises(DataError, match="reward interest needs the users' mined interests"):
        train_grpo(sft_dir, train, items, GRPOArguments(rewards=["exact", "interest"]), sft_dir / "never")
    rec = GenerativeRecommender.from_pretrained(sft_dir)
    dataset = grpo_dataset(train, rec, GRPOArguments(positions="all", max_prompts=7))
    assert len(dataset) == 7 and set(dataset.column_names) == {"prompt", "target"}


def test_constrained_log_probs_renormalize_over_the_trie():
    from deepinterestgr.recommender.constrained import SIDTrie
    from deepinterestgr.rl.trainer import constrained_log_probs

    # two items: tokens 1,3,EOS(9) and 2,4,EOS; a third 1,5,EOS; vocabulary of 10
    trie = SIDTrie(torch.tensor([[1, 3, 9], [2, 4, 9], [1, 5, 9]]), vocab_size=10)
    logits = torch.randn(2, 4, 10)
    completions = torch.tensor([[1, 3, 9, 0], [2, 4, 9, 0]])  # the last column is padding
    chosen, entropy = constrained_log_probs(logits, completions, trie)
    first = torch.log_softmax(logits[0, 0, [1, 2]], -1)[0]  # tokens 1 and 2 are allowed first
    second = torch.log_softmax(logits[0, 1, [3, 5]], -1)[0]  # after 1: 3 or 5
    assert torch.allclose(chosen[0, :3], torch.stack([first, second, torch.tensor(0.0)]), atol=1e-6)
    assert chosen[1, 1] == 0 and chosen[1, 2] == 0  # after 2 only 4, then only EOS: forced tokens cost nothing
    assert entropy[1, 1] == 0 and torch.isfinite(chosen).all() and torch.isfinite(entropy).all()
