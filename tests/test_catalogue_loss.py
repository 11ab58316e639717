"""The catalogue softmax: its loss is the teacher-forced P(item | history) under the trie, beam search ranks by the
same quantity, and a model trained with it round-trips and refuses what would misread it."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender import catalogue_loss
from deepinterestgr.recommender.backbone import load_backbone
from deepinterestgr.recommender.beam_search import plain_output_head
from deepinterestgr.recommender.catalogue_loss import catalogue_nll, catalogue_targets, token_depths
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_paths
from tests.test_recommender import HISTORIES, TINY, catalogue, search_catalogue, synthetic_sequences


@pytest.fixture(params=["collision", "item"])
def tiny(request):
    sid_map = catalogue(suffix=request.param)
    model, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(model, tokenizer, sid_map)
    return GenerativeRecommender(model, tokenizer, sid_map, max_history=5, sid_softmax="catalogue")


def item_path(rec: GenerativeRecommender, item: str) -> list[int]:
    path = sid_paths(rec.sid_map, rec.tokenizer)[rec.sid_map.item_ids.index(item)].tolist()
    return [t for t in path if t >= 0]  # the item's tokens, then EOS


def path_logp(rec: GenerativeRecommender, logits: torch.Tensor, path: list[int]) -> float:
    """Sum of each token's log-softmax over the tokens the trie allows after the path so far (`allowed_mask`,
    not the code under test's column and family paths); `logits[j]` predicts `path[j]`."""
    node, total = torch.zeros(1, dtype=torch.long), 0.0
    for depth, token in enumerate(path):
        allowed = rec.trie.allowed_mask(depth, node)[0]
        total += float(torch.log_softmax(logits[depth].masked_fill(~allowed, float("-inf")), -1)[token])
        node = rec.trie.step(depth, node, torch.tensor([token]))
    return total


@pytest.mark.parametrize("dense", [True, False])
@torch.no_grad()
def test_loss_is_the_teacher_forced_catalogue_log_likelihood_of_every_item(tiny, dense, monkeypatch):
    if not dense:  # every depth through the gathered families, as a per-item suffix over a large catalogue
        monkeypatch.setattr(catalogue_loss, "DENSE_COLUMNS", 0)
    rec, eos = tiny, tiny.tokenizer.eos_token_id
    # a `sequence` example (first item, then three items and EOS) and a `next_item` one, right-padded as TRL does
    examples = [(["item1"], ["item7", "item3", "item7"]), (["item4", "item9"], ["item12"])]
    rows, labels = [], []
    for prompt_items, completion_items in examples:
        prompt = [t for i in prompt_items for t in item_path(rec, i)[:-1]]
        completion = [t for i in completion_items for t in item_path(rec, i)[:-1]] + [eos]
        rows.append(prompt + completion)
        labels.append([-100] * len(prompt) + completion)
    width = max(map(len, rows))
    pad = rec.tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    attention = (label_ids != -100) | (torch.arange(width) < torch.tensor([len(r) for r in rows])[:, None])
    hidden = rec.model.model(input_ids, attention_mask=attention.long()).last_hidden_state
    logits = rec.model(input_ids, attention_mask=attention.long()).logits.float()
    depths = token_depths(rec.trie, eos_token_id=eos)
    targets = catalogue_targets(input_ids, label_ids, rec.trie, depths, eos_token_id=eos)
    head = rec.model.get_output_embeddings()
    nll = catalogue_nll(hidden[:, :-1].flatten(0, 1), head.weight, None, targets, rec.trie)
    expected = 0.0
    for n, (prompt_items, completion_items) in enumerate(examples):
        start = sum(len(item_path(rec, i)) - 1 for i in prompt_items) - 1  # position predicting the first code
        for item in completion_items:
            path = item_path(rec, item)
            expected += path_logp(rec, logits[n, start : start + len(path)], path)
            start += len(path) - 1  # the next item's first code is predicted where this one's EOS is
    assert len(targets.vocab_row) == 0  # every label is a catalogue token
    assert float(nll) == pytest.approx(-expected, rel=1e-5)


@pytest.mark.parametrize("shared_prefix", [True, False])
@torch.no_grad()
def test_beam_search_ranks_items_by_their_catalogue_probability(tiny, shared_prefix):
    assert plain_output_head(tiny.model) is not None  # the search projects hidden states onto the columns it reads
    prompt_ids = tiny.tokenizer(tiny.prompts([HISTORIES[0]]))["input_ids"][0]
    expected = []
    for row, item in enumerate(tiny.sid_map.item_ids):
        path = item_path(tiny, item)
        logits = tiny.model(torch.tensor([prompt_ids + path])).logits[0, len(prompt_ids) - 1 : -1].float()
        expected.append((path_logp(tiny, logits, path) / len(path), row))
    expected.sort(reverse=True)
    out = search_catalogue(tiny, HISTORIES[0], sid_softmax="catalogue", shared_prefix=shared_prefix)
    assert out.items[0].tolist() == [row for _, row in expected]
    assert np.allclose(out.scores[0].numpy(), [s for s, _ in expected], atol=1e-4)
    assert torch.exp(out.token_logprobs[0].sum(-1)).sum() == pytest.approx(1.0, abs=1e-4)  # one distribution
    vocabulary = search_catalogue(tiny, HISTORIES[0], sid_softmax="vocabulary")
    assert not torch.allclose(out.scores, vocabulary.scores)


@pytest.mark.parametrize("suffix", ["collision", "item"])
def test_catalogue_sft_trains_round_trips_and_keeps_grpo_constrained(tmp_path, suffix):
    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
    from deepinterestgr.rl.arguments import GRPOArguments
    from deepinterestgr.rl.grpo import train_grpo

    sid_map = catalogue(suffix=suffix)
    before, _ = load_backbone(TINY, seed=0)
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    args = RecommenderSFTArguments(
        backbone=TINY, tasks={"sequence": 1.0, "next_item": 0.5}, epochs=4, learning_rate=3e-3, batch_size=16,
        logging_steps=2, seed=0, sid_softmax="catalogue",
    )  # fmt: skip
    result = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path / "sft")
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    # per-token loss over a few siblings starts near log(4), forced tokens add 0: a smaller drop than TRL's
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.9
    trained = result.recommender.model.state_dict()
    for name in ("model.layers.0.mlp.up_proj.weight", "model.embed_tokens.weight"):
        assert not torch.equal(before.state_dict()[name], trained[name])
    rec = result.recommender
    rec.save_pretrained(tmp_path / "saved")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "saved")
    assert loaded.sid_softmax == "catalogue"
    recs = loaded.recommend(HISTORIES, k=5)
    assert recs == rec.recommend(HISTORIES, k=5)
    assert all(r.item_id in sid_map for row in recs for r in row)
    with pytest.raises(ConfigError, match=r"keep grpo\.constrained_policy: true"):
        train = Dataset.from_dict({"user_id": ["u"], "item_ids": [["item1", "item2", "item3"]]})
        train_grpo(tmp_path / "saved", train, items, GRPOArguments(constrained_policy=False), tmp_path / "grpo")


def test_catalogue_softmax_is_validated():
    from deepinterestgr.recommender.sft import RecommenderSFTArguments

    with pytest.raises(ConfigError, match="sid_softmax must be one of vocabulary, catalogue, got 'trie'"):
        RecommenderSFTArguments(sid_softmax="trie")
    with pytest.raises(ConfigError, match="label_smoothing needs sid_softmax: vocabulary"):
        RecommenderSFTArguments(sid_softmax="catalogue", label_smoothing=0.1)


def test_catalogue_sft_refuses_a_soft_capped_head(tmp_path):
    """The loss projects hidden states onto the head's rows, which would not be the model's logits if the head
    scales or soft-caps them: such a backbone must train with the full softmax, and says so before training."""
    from deepinterestgr.recommender.catalogue_loss import CatalogueSFTTrainer
    from deepinterestgr.recommender.constrained import SIDTrie
    from deepinterestgr.recommender.sft import RecommenderSFTArguments, trl_config
    from deepinterestgr.recommender.tasks import build_sft_dataset

    sid_map = catalogue(suffix="item")
    model, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(model, tokenizer, sid_map)
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    dataset = build_sft_dataset(synthetic_sequences(sid_map), items, sid_map, tasks={"sequence": 1.0}, max_history=5)
    trie = SIDTrie(sid_paths(sid_map, tokenizer), vocab_size=model.get_input_embeddings().weight.shape[0])
    config = trl_config(RecommenderSFTArguments(backbone=TINY, epochs=1), tmp_path)

    def trainer():
        return CatalogueSFTTrainer(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer, trie=trie
        )

    assert trainer().trie is trie  # a plain head trains
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match=r"projects hidden states .*; train it with sft\.sid_softmax: vocabulary"):
        trainer()
