"""Recommender on tiny models: SID tokens, the trie, constrained beam search vs brute force and vs `generate`."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from deepinterestgr.errors import DataError
from deepinterestgr.recommender.backbone import BackboneConfig, load_backbone
from deepinterestgr.recommender.beam_search import sid_beam_search
from deepinterestgr.recommender.constrained import SIDConstrainedLogitsProcessor, SIDTrie
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_paths
from deepinterestgr.sid import SemanticIDMap

TINY = BackboneConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0)


def catalogue(
    n: int = 40, codebook: int = 4, seed: int = 0, suffix: str = "collision", unique: bool = False
) -> SemanticIDMap:
    """Random codes; `unique`: no two items share their codes, so collision suffixes add no token at all."""
    rng = np.random.default_rng(seed)
    if unique:
        codes = np.stack(np.unravel_index(rng.choice(codebook**3, size=n, replace=False), (codebook,) * 3), axis=1)
    else:
        codes = rng.integers(0, codebook, size=(n, 3))
    return SemanticIDMap.from_codes([f"item{i}" for i in range(n)], codes, codebook_size=codebook, suffix=suffix)


@pytest.fixture(params=["collision", "item", "unique"])
def tiny(request):
    """A tiny recommender over a random 40-item catalogue: with collision suffixes, with per-item suffixes, and
    with codes unique already (no suffix at all)."""
    unique = request.param == "unique"
    sid_map = catalogue(suffix="collision" if unique else request.param, unique=unique)
    if unique:
        assert (sid_map.suffix < 0).all()
    model, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(model, tokenizer, sid_map)
    return GenerativeRecommender(model, tokenizer, sid_map, max_history=5)


@torch.no_grad()
def brute_force(
    rec: GenerativeRecommender, prompt: str, length_penalty: float = 1.0, *, bidirectional: bool = False
) -> list[tuple[float, int]]:
    """Score every catalogue item by teacher forcing its whole path (SID + EOS); `bidirectional`: under the
    prefix-LM mask (the prompt's tokens attend both ways)."""
    from deepinterestgr.recommender.prefix_lm import prefix_lm_mask

    paths = sid_paths(rec.sid_map, rec.tokenizer)
    prompt_ids = rec.tokenizer(prompt)["input_ids"]
    scored = []
    for row, path in enumerate(paths.tolist()):
        path = [t for t in path if t >= 0]
        ids = torch.tensor([prompt_ids + path])
        prompt_mask = torch.tensor([[1] * len(prompt_ids) + [0] * len(path)])
        mask = prefix_lm_mask(torch.ones_like(ids), prompt_mask, rec.model) if bidirectional else None
        logits = rec.model(ids, attention_mask=mask).logits[0, len(prompt_ids) - 1 : -1]
        logp = torch.log_softmax(logits.float(), -1)
        total = float(logp[torch.arange(len(path)), torch.tensor(path)].sum())
        scored.append((total / len(path) ** length_penalty, row))
    return sorted(scored, reverse=True)


def search_catalogue(rec: GenerativeRecommender, history: list[str], **kwargs):
    """Constrained beam search for one history with as many beams as items (the whole ranking)."""
    enc = rec.tokenizer(rec.prompts([history]), return_tensors="pt")
    return sid_beam_search(
        rec.model, enc["input_ids"], enc["attention_mask"], rec.trie, eos_token_id=rec.tokenizer.eos_token_id,
        num_beams=len(rec.sid_map), **kwargs,
    )  # fmt: skip


def test_sid_tokens_are_normal_tokens_and_consistent(tiny):
    tok = tiny.tokenizer
    assert "<a_0>" in tok.get_vocab() and "<a_0>" not in tok.all_special_tokens
    assert tiny.model.get_input_embeddings().weight.shape[0] == len(tok)
    assert tiny.model.config.pad_token_id == tok.pad_token_id == tiny.model.generation_config.pad_token_id
    assert tok.convert_ids_to_tokens(tok("<a_1><b_2><c_3>")["input_ids"]) == ["<a_1>", "<b_2>", "<c_3>"]


def test_trie_masks_only_catalogue_continuations():
    sid_map = catalogue()
    paths = torch.tensor([[1, 5, 9, 20, -1], [1, 5, 10, 13, 20], [1, 5, 10, 14, 20], [2, 6, 9, 20, -1]])
    trie = SIDTrie(paths, vocab_size=21)
    assert trie.allowed_mask(0, torch.tensor([0])).nonzero()[:, 1].tolist() == [1, 2]
    node = trie.walk(torch.tensor([[1, 5, 10], [1, 5, 9], [2, 7, 9]]))
    assert node[2] == -1
    allowed = trie.allowed_mask(3, node)
    assert allowed[0].nonzero().squeeze(-1).tolist() == [13, 14] and allowed[1].nonzero().squeeze(-1).tolist() == [20]
    assert not allowed[2].any()
    assert len(sid_map) == 40
    # an excluded item is masked at the first token whose subtree holds it alone, and only there
    root = torch.tensor([0])
    assert trie.excluded_column_mask(0, root, torch.tensor([[3]])).tolist() == [[False, True]]  # tokens 1, 2
    assert not trie.excluded_column_mask(0, root, torch.tensor([[1, -1]])).any()  # token 1 also leads to 0 and 2
    node = trie.walk(torch.tensor([[1, 5, 10], [1, 5, 10]]))
    excluded = trie.excluded_column_mask(3, node, torch.tensor([[1, -1], [-1, -1]]))
    columns = trie.columns[3].tolist()
    assert excluded[0].nonzero().squeeze(-1).tolist() == [columns.index(13)] and not excluded[1].any()


HISTORIES = [["item1", "item2"], ["item5"], ["item7", "item3", "item9", "item1", "item30", "item12"]]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_beam_search_matches_brute_force_ranking(tiny, shared_prefix):
    tiny.tokenizer.padding_side = "left"
    for history in HISTORIES:
        expected = brute_force(tiny, tiny.prompts([history])[0])
        out = search_catalogue(tiny, history, shared_prefix=shared_prefix)
        got = [i for i in out.items[0].tolist() if i >= 0]
        assert got[0] == expected[0][1]
        assert got == [row for _, row in expected]  # beams cover the catalogue: the whole ranking agrees
        assert np.allclose(out.scores[0].numpy(), [s for s, _ in expected], atol=1e-4)
        # per-token log-probabilities add up to each path's score times its length (SID tokens + EOS)
        lengths = (sid_paths(tiny.sid_map, tiny.tokenizer)[out.items[0]] >= 0).sum(-1)
        assert torch.allclose(out.token_logprobs[0].sum(-1) / lengths, out.scores[0], atol=1e-4)
        assert bool((out.token_logprobs[0] <= 0).all())


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_excluded_items_leave_the_ranking_and_nothing_else_changes(tiny, shared_prefix):
    tiny.tokenizer.padding_side = "left"
    for history in HISTORIES:
        full = search_catalogue(tiny, history, shared_prefix=shared_prefix)
        rows = tiny.history_rows([history])
        out = search_catalogue(tiny, history, shared_prefix=shared_prefix, exclude=rows)
        excluded = set(rows[0].tolist())
        pairs = zip(full.items[0].tolist(), full.scores[0].tolist(), strict=True)
        kept = [(i, s) for i, s in pairs if i not in excluded]
        got = [(i, s) for i, s in zip(out.items[0].tolist(), out.scores[0].tolist(), strict=True) if i >= 0]
        assert [i for i, _ in got] == [i for i, _ in kept]  # the same order, history items gone
        assert np.allclose([s for _, s in got], [s for _, s in kept], atol=1e-5)  # scores not renormalised
    # a narrow beam fills the places of excluded items with other items, each with its own exact score
    for history, row in zip(HISTORIES, tiny.recommend(HISTORIES, k=8, num_beams=8, exclude_history=True), strict=True):
        assert len({r.item_id for r in row}) == 8 and not {r.item_id for r in row} & set(history)
        exact = {tiny.sid_map.item_ids[n]: s for s, n in brute_force(tiny, tiny.prompts([history])[0])}
        assert np.allclose([r.score for r in row], [exact[r.item_id] for r in row], atol=1e-4)


def test_batched_left_padded_search_equals_one_by_one(tiny):
    batched = tiny.search(HISTORIES, num_beams=8)
    for n, history in enumerate(HISTORIES):
        single = tiny.search([history], num_beams=8)
        assert batched.items[n].tolist() == single.items[0].tolist()
        assert torch.allclose(batched.scores[n], single.scores[0], atol=1e-4)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_same_items_as_generate_with_the_logits_processor(tiny, shared_prefix):
    beams = 8
    prompts = tiny.prompts(HISTORIES)
    tiny.tokenizer.padding_side = "left"
    enc = tiny.tokenizer(prompts, return_tensors="pt", padding=True)
    processor = SIDConstrainedLogitsProcessor(
        tiny.trie,
        prompt_length=enc["input_ids"].shape[1],
        eos_token_id=tiny.tokenizer.eos_token_id,
        pad_token_id=tiny.tokenizer.pad_token_id,
    )
    generated = tiny.model.generate(
        **enc,
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=tiny.trie.depth,
        do_sample=False,
        logits_processor=LogitsProcessorList([processor]),
    )
    completions = generated[:, enc["input_ids"].shape[1] :]
    ours = sid_beam_search(
        tiny.model,
        enc["input_ids"],
        enc["attention_mask"],
        tiny.trie,
        eos_token_id=tiny.tokenizer.eos_token_id,
        num_beams=beams,
        shared_prefix=shared_prefix,
    )
    for n in range(len(prompts)):
        rows = completions[n * beams : (n + 1) * beams]
        texts = tiny.tokenizer.batch_decode(rows, skip_special_tokens=True)
        items = [tiny.sid_map.item_for_tokens(t.replace(" ", "")) for t in texts]
        assert all(i is not None for i in items)  # every generated SID is a catalogue item
        assert [tiny.sid_map.item_ids[i] for i in ours.items[n].tolist()] == items


def test_recommend_returns_valid_distinct_items_and_round_trips(tiny, tmp_path):
    recs = tiny.recommend(HISTORIES, k=10)
    for row in recs:
        assert len(row) == 10 and len({r.item_id for r in row}) == 10
        assert all(r.item_id in tiny.sid_map for r in row)
        assert [r.score for r in row] == sorted((r.score for r in row), reverse=True)
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = GenerativeRecommender.from_pretrained(tmp_path)
    assert loaded.recommend(HISTORIES, k=10) == recs
    with pytest.raises(DataError, match=r"history 1: item 'nope' is not in this recommender's catalogue"):
        tiny.recommend([["item1"], ["nope"]])
    with pytest.raises(DataError, match="history 0 is empty"):
        tiny.recommend([[]])


def test_cli_recommend_prints_the_same_items_and_refuses_unknown_ids(tiny, tmp_path):
    from typer.testing import CliRunner

    from deepinterestgr.cli import app

    tiny.save_pretrained(tmp_path)
    expected = tiny.recommend([HISTORIES[0]], k=5)[0]
    result = CliRunner().invoke(app, ["recommend", "--model", str(tmp_path), "-k", "5", *HISTORIES[0]])
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1:5] for line in result.output.splitlines() if line.count("│") == 5]
    assert [(r[1].strip(), float(r[3])) for r in rows] == [(e.item_id, round(e.score, 4)) for e in expected]
    assert [r[2].strip() for r in rows] == [tiny.sid_map.tokens_of(e.item_id) for e in expected]
    result = CliRunner().invoke(app, ["recommend", "--model", str(tmp_path), "--exclude-history", *HISTORIES[2]])
    assert result.exit_code == 0, result.output
    shown = [line.split("│")[2].strip() for line in result.output.splitlines() if line.count("│") == 5]
    assert shown == [r.item_id for r in tiny.recommend([HISTORIES[2]], exclude_history=True)[0]]
    assert len(shown) == 10 and not set(shown) & set(HISTORIES[2])
    result = CliRunner().invoke(app, ["recommend", "--model", str(tmp_path), "item1", "nope"])
    assert result.exit_code == 2 and "item 'nope' is not in this recommender's catalogue" in result.output
    result = CliRunner().invoke(app, ["recommend", "--model", str(tmp_path), "-k", "30", "item1"])
    assert result.exit_code == 2 and "needs --num-beams >= 30" in result.output


def synthetic_sequences(sid_map: SemanticIDMap, users: int = 60, seed: int = 0) -> list[list[str]]:
    """Users walk the catalogue in steps of +1 or +2: a pattern a tiny model can learn."""
    rng = np.random.default_rng(seed)
    n = len(sid_map)
    seqs = []
    for _ in range(users):
        start = int(rng.integers(0, n))
        seqs.append([sid_map.item_ids[(start + k * int(rng.integers(1, 3))) % n] for k in range(8)])
    return seqs


def test_sft_changes_parameters_and_lowers_loss(tmp_path):
    from datasets import Dataset

    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender

    sid_map = catalogue()
    before, _ = load_backbone(TINY, seed=0)
    args = RecommenderSFTArguments(
        backbone=TINY,
        tasks={"sequence": 1.0, "next_item": 0.5},
        epochs=4,
        learning_rate=3e-3,
        batch_size=16,
        logging_steps=2,
        seed=0,
        sid_softmax="vocabulary",  # TRL's own loss; the catalogue softmax trains in test_catalogue_loss.py
    )
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    result = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.8  # batches differ in length and task: average a few
    trained = result.recommender.model.state_dict()
    assert not torch.equal(
        before.state_dict()["model.layers.0.mlp.up_proj.weight"], trained["model.layers.0.mlp.up_proj.weight"]
    )
    assert any((tmp_path / "checkpoints").glob("checkpoint-*"))  # resumable
    recs = result.recommender.recommend([["item3", "item4"]], k=5)
    assert all(r.item_id in sid_map for r in recs[0])


def test_lora_trains_adapters_and_sid_rows(tmp_path):
    from datasets import Dataset

    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender

    sid_map = catalogue()
    base, tokenizer = load_backbone(TINY, seed=0)
    add_sid_tokens(base, tokenizer, sid_map)
    sid_rows = torch.tensor(tokenizer.convert_tokens_to_ids(sid_map.vocabulary()))
    before = base.state_dict()
    args = RecommenderSFTArguments(backbone=TINY, epochs=2, batch_size=16, lora=True, lora_r=4, seed=0)
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    result = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path)
    after = result.recommender.model.state_dict()
    assert "lora" not in " ".join(after)  # merged back into plain weights
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )
    emb_before, emb_after = before["model.embed_tokens.weight"], after["model.embed_tokens.weight"]
    assert not torch.equal(emb_before[sid_rows], emb_after[sid_rows])  # the new token rows trained
    other = torch.tensor([tokenizer.unk_token_id])
    assert torch.equal(emb_before[other], emb_after[other])  # the rest of the vocabulary did not


def test_residual_dropout_only_while_training_and_only_inside_the_block():
    from deepinterestgr.errors import ConfigError
    from deepinterestgr.recommender.dropout import residual_dropout

    model, _ = load_backbone(TINY, seed=0)
    ids = torch.tensor([[1, 2, 3, 2, 1]])

    def two_passes_differ() -> bool:
        with torch.no_grad():
            return not torch.equal(model(ids).logits, model(ids).logits)

    model.train()
    assert not two_passes_differ()  # TINY has no dropout of its own
    with residual_dropout(model, 0.3) as places:
        assert places == 1 + 2 * TINY.num_layers  # embeddings + attention and MLP of each layer
        assert two_passes_differ()
        model.eval()
        assert not two_passes_differ()
        model.train()
    assert not two_passes_differ()  # hooks removed
    with pytest.raises(ConfigError, match=r"hidden_dropout must be in \[0, 1\), got 1.5"), residual_dropout(model, 1.5):
        pass


def test_lora_resume_restores_the_trained_sid_rows(tmp_path):
    from datasets import Dataset

    from deepinterestgr.recommender.sft import RecommenderSFTArguments, SIDRowsCheckpoint, train_recommender

    sid_map = catalogue()
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    args = RecommenderSFTArguments(backbone=TINY, epochs=1, batch_size=16, lora=True, lora_r=4, save_steps=2, seed=0)
    first = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path).recommender
    rows = first.tokenizer.convert_tokens_to_ids(sid_map.vocabulary())
    trained_rows = first.model.get_input_embeddings().weight[rows]
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(tmp_path / "checkpoints"))
    assert (tmp_path / "checkpoints" / last / SIDRowsCheckpoint.FILE).is_file()
    # the same run again finds its finished checkpoint: no step left to train, so the SID rows must come from it
    again = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path).recommender
    assert torch.equal(again.model.get_input_embeddings().weight[rows], trained_rows)


def test_sequence_task_makes_every_later_item_a_target_exactly_once():
    from deepinterestgr.recommender.tasks import PromptTemplates, sequence_examples

    sid_map = catalogue(n=60)
    long, short = sid_map.item_ids[:45], sid_map.item_ids[45:47]
    out = sequence_examples([long, short, sid_map.item_ids[:1]], sid_map, max_history=20, templates=PromptTemplates())

    def sids(items):
        return "".join(sid_map.tokens_of(i) for i in items)

    windows = [long[24:45], long[4:25], long[0:5], short]  # each ends max_history items before the previous one
    assert out["prompt"] == [sids(w[:1]) for w in windows]
    assert out["completion"] == [sids(w[1:]) for w in windows]
    assert sum(c.count("<a_") for c in out["completion"]) == (45 - 1) + (2 - 1)  # one-item sequences give none


def test_label_smoothing_reaches_the_loss(tmp_path):
    from datasets import Dataset

    from deepinterestgr.errors import ConfigError
    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender

    sid_map = catalogue()
    items = Dataset.from_dict({"item_id": sid_map.item_ids})

    def first_loss(smoothing: float) -> float:
        args = RecommenderSFTArguments(
            backbone=TINY, epochs=1, batch_size=16, logging_steps=1, label_smoothing=smoothing, seed=0,
            sid_softmax="vocabulary",
        )  # fmt: skip
        result = train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path / str(smoothing))
        return next(h["loss"] for h in result.log_history if "loss" in h)

    plain, smoothed = first_loss(0.0), first_loss(0.2)
    assert np.isfinite(smoothed) and smoothed != pytest.approx(plain, rel=1e-3)  # same model, same first batch
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        RecommenderSFTArguments(label_smoothing=1.0)


def test_prefix_lm_mask_attends_both_ways_over_the_prompt_only():
    from deepinterestgr.recommender.prefix_lm import prefix_lm_mask

    model, _ = load_backbone(TINY, seed=0)
    attention = torch.tensor([[0, 1, 1, 1, 1]])  # left padding, then 2 prompt and 2 completion tokens
    prompt = torch.tensor([[0, 1, 1, 0, 0]])
    allowed = prefix_lm_mask(attention, prompt, model)[0, 0].int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],  # padding row: itself only (no empty softmax row)
        [0, 1, 1, 0, 0],  # first prompt token sees the second one
        [0, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],  # completion: causal
        [0, 1, 1, 1, 1],
    ]


def test_bidirectional_prompt_search_matches_brute_force_with_the_prefix_mask(tiny):
    expected = brute_force(tiny, tiny.prompts([HISTORIES[2]])[0], bidirectional=True)
    search = {b: search_catalogue(tiny, HISTORIES[2], bidirectional_prompt=b) for b in (True, False)}
    assert [i for i in search[True].items[0].tolist() if i >= 0] == [row for _, row in expected]
    assert np.allclose(search[True].scores[0].numpy(), [s for s, _ in expected], atol=1e-4)
    assert not torch.allclose(search[True].scores[0], search[False].scores[0])  # the mask changes the model


def test_bidirectional_prompt_trains_round_trips_and_is_refused_where_unsupported(tmp_path):
    from datasets import Dataset

    from deepinterestgr.errors import ConfigError
    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
    from deepinterestgr.rl.arguments import GRPOArguments
    from deepinterestgr.rl.grpo import train_grpo

    sid_map = catalogue()
    items = Dataset.from_dict({"item_id": sid_map.item_ids})

    def run(attention: str):
        args = RecommenderSFTArguments(
            backbone=TINY, tasks={"next_item": 1.0}, epochs=1, batch_size=16, logging_steps=1, seed=0,
            prompt_attention=attention,
        )  # fmt: skip
        return train_recommender(synthetic_sequences(sid_map), items, sid_map, args, tmp_path / attention)

    causal, bidirectional = run("causal"), run("bidirectional")
    first = [next(h["loss"] for h in r.log_history if "loss" in h) for r in (causal, bidirectional)]
    assert first[0] != pytest.approx(first[1], rel=1e-4)  # same weights, same first batch: the mask was applied
    rec = bidirectional.recommender
    rec.save_pretrained(tmp_path / "saved")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "saved")
    assert loaded.prompt_attention == "bidirectional"
    assert loaded.recommend(HISTORIES, k=5) == rec.recommend(HISTORIES, k=5)
    with pytest.raises(ConfigError, match="bidirectional needs one target per example"):
        RecommenderSFTArguments(tasks={"sequence": 1.0}, prompt_attention="bidirectional")
    with pytest.raises(ConfigError, match="GRPO scores completions with TRL's causal forward"):
        train = Dataset.from_dict({"user_id": ["u"], "item_ids": [["item1", "item2", "item3"]]})
        train_grpo(tmp_path / "saved", train, items, GRPOArguments(), tmp_path / "grpo")
