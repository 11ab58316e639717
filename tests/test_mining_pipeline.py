"""The mine and judge stages: miner, MLIM merge, user interests, the three judges, quality, embedding text, CLI.

Real parts only: tiny random chat models built from config (tests/tiny_chat.py) answer through `LocalBackend`, the
answer cache is a real SQLite file, the encoder is the offline MiniLM, the CLI runs in subprocesses (and, where
only its exit code and output matter, in this process through typer's runner). Where a test
needs answers it controls (random models never agree on a descriptor), it stores them in the cache under the keys
the backend would use, and the miner reads them as that backend's answers: the cache's contract.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, List, Value, load_from_disk
from rich.console import Console
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from deepinterestgr.artifacts import load_items, read_manifest, write_stage
from deepinterestgr.cli import app
from deepinterestgr.config import JudgeConfig, MineConfig, PipelineConfig
from deepinterestgr.data import PreparedData, prepare
from deepinterestgr.data.prepare import sample_path
from deepinterestgr.data.schema import ITEM_FEATURES
from deepinterestgr.embedding.stage import embed_items
from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.mining.backends import GenerationResult
from deepinterestgr.mining.cache import AnswerCache
from deepinterestgr.mining.judge import (
    BLANK_ITEM,
    GROUNDING_CUE,
    JudgeReport,
    classifier_labels,
    grounding_labels,
    grounding_scores,
    llm_labels,
    train_classifier,
    with_labels,
)
from deepinterestgr.mining.local import LocalBackend
from deepinterestgr.mining.miner import (
    COLUMN_TYPES,
    USER_FEATURES,
    MiningReport,
    mine_items,
    mine_user_interests,
)
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES
from deepinterestgr.mining.quality import quality_column
from deepinterestgr.mining.schema import parse_descriptors, parse_interests, parse_label
from deepinterestgr.mining.served import ServedBackend
from deepinterestgr.stages import (
    BUNDLED_MINED,
    BUNDLED_USERS,
    CACHE_FILE,
    join_mined_columns,
    load_user_interests,
    run_judge,
    run_mine,
)
from tests.tiny_chat import build_tiny_chat_model, tiny_chat_lm, tiny_chat_tokenizer

torch.set_num_threads(1)

CUT = "cut off at the token limit (finish_reason 'length'): raise max_new_tokens"
EXAMPLES = DEFAULT_TEMPLATES.example_descriptors()
MINED_FEATURES = Features({**ITEM_FEATURES, **{k: v for k, v in COLUMN_TYPES.items() if k != "caption"}})
QUIET = Console(file=io.StringIO())


def _item(item_id: str, *, brand: str | None = None, categories: tuple[str, ...] = (), **fields: str) -> dict:
    return {"item_id": item_id, "title": None, "description": None, "brand": brand, "categories": list(categories),
            "image": None, **fields}  # fmt: skip


# six items, four distinct texts: a = c and b = e
ITEMS = Dataset.from_list(
    [
        _item("a", brand="Alba Botanica", categories=("Skin Care", "Face")),
        _item("b", brand="OPI", categories=("Makeup", "Nails")),
        _item("c", brand="Alba Botanica", categories=("Skin Care", "Face")),
        _item("d", title="Rose lip balm", description="A tinted balm", categories=("Makeup", "Lips")),
        _item("e", brand="OPI", categories=("Makeup", "Nails")),
        _item("f", categories=("Hair Care",)),
    ],
    features=ITEM_FEATURES,
)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_chat_tokenizer()


def _backend(tokenizer: PreTrainedTokenizerFast, seed: int, model_id: str | None = None) -> LocalBackend:
    """A tiny random chat model (weights from `seed`) behind the real local backend."""
    return LocalBackend.from_model(tiny_chat_lm(tokenizer, seed=seed), tokenizer, model_id=model_id or f"tiny-{seed}")


def _key(backend, row: dict, templates=DEFAULT_TEMPLATES) -> str:
    return templates.descriptors_request(row).key(backend.name, backend.model)


def _answer(*descriptors: tuple[str, float]) -> GenerationResult:
    payload = {"descriptors": [{"descriptor": d, "confidence": c} for d, c in descriptors]}
    return GenerationResult(json.dumps(payload, ensure_ascii=False), "stop")


def _f32(values: list[float]) -> list[float]:
    """Values as a float32 column stores them."""
    return [float(np.float32(v)) for v in values]


def _rows(path: Path) -> dict[str, tuple[str, str, float]]:
    """key -> (text, finish_reason, created) of every stored answer (`created` changes whenever a row is written)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {k: (t, f, c) for k, t, f, c in db.execute("SELECT key, text, finish_reason, created FROM answers")}


# ----- mine_items -----
def test_mine_items_asks_each_text_once_and_resumes_from_the_cache(tmp_path, tokenizer):
    backend = _backend(tokenizer, seed=1)
    path = tmp_path / "answers.sqlite"
    with AnswerCache(path) as cache:
        mined, report = mine_items(ITEMS, [backend], cache, progress=False)
        assert len(cache) == 4 and cache.counts() == {"stop": 4}  # six items, four distinct texts
        parsed = [parse_descriptors(cache.get(_key(backend, row)), examples=EXAMPLES) for row in ITEMS]
    assert all(p.ok for p in parsed)  # what this random model writes under the grammar: four usable answers
    assert mined.features == MINED_FEATURES
    assert mined["descriptors"] == [p.descriptors for p in parsed]
    assert mined["descriptor_confidences"] == [_f32(p.confidences) for p in parsed]
    assert mined["descriptor_sources"] == [["local:tiny-1"] * len(p.descriptors) for p in parsed]
    assert mined[0]["descriptors"] == mined[2]["descriptors"] and mined[1]["descriptors"] == mined[4]["descriptors"]
    assert (report.items, report.requests, report.valid, report.failures) == (
        6,
        {"local:tiny-1": 4},
        {"local:tiny-1": 4},
        [],
    )
    summary = report.summary(mined)
    assert summary["valid_rate"] == {"local:tiny-1": 1.0} and summary["items_with_descriptors"] == 1.0
    assert summary["descriptors_per_item"] == sum(len(p.descriptors) for p in parsed) / 6
    assert summary["failures"] == 0 and summary["captions"] == 0

    # a restart with other weights under the same model name: had anything been generated, answers would differ
    stored = _rows(path)
    with AnswerCache(path) as cache:
        again, again_report = mine_items(ITEMS, [_backend(tokenizer, seed=2, model_id="tiny-1")], cache, progress=False)
    assert _rows(path) == stored  # no row added or rewritten
    assert again.to_list() == mined.to_list() and again_report.valid == report.valid


def test_unusable_answers_are_failures_with_reason_and_raw_text(tmp_path, tokenizer):
    templates = dataclasses.replace(DEFAULT_TEMPLATES, descriptors_max_new_tokens=4)  # no JSON answer fits in 4
    backend = _backend(tokenizer, seed=1)
    path = tmp_path / "answers.sqlite"
    with AnswerCache(path) as cache:
        mined, report = mine_items(ITEMS, [backend], cache, templates=templates, progress=False)
        raws = [cache.get(_key(backend, row, templates)).text for row in ITEMS]
        assert cache.counts() == {"length": 4}
    assert all(raw and not raw.endswith("}") for raw in raws)
    assert report.failures == [
        {"id": i, "task": "descriptors", "source": "local:tiny-1", "reason": CUT, "raw": raw}
        for i, raw in zip("abcdef", raws, strict=True)
    ]
    assert mined.features == MINED_FEATURES  # typed even when every list is empty
    assert mined["descriptors"] == [[]] * 6 and mined["descriptor_confidences"] == [[]] * 6
    summary = report.summary(mined)
    assert summary["valid_rate"] == {"local:tiny-1": 0.0} and summary["failures"] == 6
    assert (summary["items_with_descriptors"], summary["descriptors_per_item"], summary["own_words_share"]) == (0, 0, 0)

    stored = _rows(path)  # stored failures are reused as they are, and asked again only on request
    with AnswerCache(path) as cache:
        mine_items(ITEMS, [backend], cache, templates=templates, progress=False)
        assert _rows(path) == stored
        _, retried = mine_items(ITEMS, [backend], cache, templates=templates, retry_failed=True, progress=False)
    rewritten = _rows(path)
    assert sorted(rewritten) == sorted(stored) and all(rewritten[k][2] > stored[k][2] for k in stored)
    assert [f["raw"] for f in retried.failures] == raws  # greedy: asked again, the same cut-off answer


def test_mlim_merge_keeps_each_descriptor_once_with_its_first_source_and_highest_confidence(tmp_path, tokenizer):
    first, second = _backend(tokenizer, seed=3), _backend(tokenizer, seed=4)
    a, b, d, f = (ITEMS[n] for n in (0, 1, 3, 5))
    path = tmp_path / "answers.sqlite"
    with AnswerCache(path) as cache:
        cache.put(_key(first, d), _answer(("Tinted lips", 0.9), ("pocket size", 0.2)))
        live, _ = mine_items(ITEMS, [first], cache, progress=False)  # the other three texts, generated
        assert len(cache) == 4
        own = {n: (live[n]["descriptors"], live[n]["descriptor_confidences"]) for n in (0, 1, 5)}
        assert all(descriptors for descriptors, _ in own.values())
        top = own[0][0][0]  # the first model's first descriptor of item a, which the second model repeats
        cache.put(_key(second, a), _answer((f"  {top}.", 0.35), ("Gentle toner", 0.6)))  # same once normalized
        cache.put(_key(second, b), _answer(("Chip-free nails", 0.7), ("chip-free NAILS.", 0.9), ("✨", 0.1)))
        cache.put(_key(second, d), _answer(("tinted lips!", 0.4), ("Pocket size", 0.8)))
        cache.put(_key(second, f), GenerationResult('{"descriptors": [{"descriptor": "x", "conf', "length"))
        merged, report = mine_items(ITEMS, [first, second], cache, progress=False)
        assert len(cache) == 8  # nothing was generated: every answer came from the cache

    s1, s2 = "local:tiny-3", "local:tiny-4"
    a_conf = [max(own[0][1][0], float(np.float32(0.35))), *own[0][1][1:]]
    expected = {
        0: (own[0][0] + ["gentle toner"], _f32([*a_conf, 0.6]), [s1] * len(own[0][0]) + [s2]),
        1: (own[1][0] + ["chip-free nails", "✨"], own[1][1] + _f32([0.7, 0.1]), [s1] * len(own[1][0]) + [s2, s2]),
        3: (["tinted lips", "pocket size"], _f32([0.9, 0.8]), [s1, s1]),
        5: (own[5][0], own[5][1], [s1] * len(own[5][0])),
    }
    expected[2], expected[4] = expected[0], expected[1]  # same texts, same answers
    columns = ("descriptors", "descriptor_confidences", "descriptor_sources")
    assert [tuple(merged[n][c] for c in columns) for n in range(6)] == [expected[n] for n in range(6)]
    assert report.requests == {s1: 4, s2: 4} and report.valid == {s1: 4, s2: 3}
    assert report.failures == [
        {
            "id": "f",
            "task": "descriptors",
            "source": s2,
            "reason": CUT,
            "raw": '{"descriptors": [{"descriptor": "x", "conf',
        }
    ]


def test_summary_counts_descriptors_that_only_repeat_the_items_words():
    items = Dataset.from_list(
        [
            {**_item("b", brand="OPI", categories=("Makeup", "Nails")),
             "descriptors": ["makeup nails", "opi", "chip-free nails", "✨", "保湿"]},
            {**_item("v", categories=("Maquillage", "Vernis à ongles")), "descriptors": ["vernis à ongles"]},
            {**_item("z", categories=("Makeup",)), "descriptors": []},
        ]
    )  # fmt: skip
    report = MiningReport(items=3, seconds=2.0, requests={"s": 4}, valid={"s": 3})
    # own words: "makeup nails", "opi", "vernis à ongles"; not: a new word, or no word at all ("✨")
    assert report.summary(items) == {
        "items": 3,
        "seconds": 2.0,
        "items_per_second": 1.5,
        "valid_rate": {"s": 0.75},
        "items_with_descriptors": 2 / 3,
        "descriptors_per_item": 2.0,
        "distinct_descriptors": 6,
        "own_words_share": 0.5,
        "captions": 0,
        "failures": 0,
    }


# ----- user interests -----
def test_user_interests_come_from_the_train_split_only(tmp_path, tokenizer, p5_dir):
    data = prepare("p5", p5_dir)
    train, items = data.splits["train"], data.items
    assert train["item_ids"] == [["A1"], ["A2", "A3"], ["A4"]]  # each user's sequence without its last two items
    by_id = {row["item_id"]: row for row in items}
    backend = _backend(tokenizer, seed=1)
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        users, failures = mine_user_interests(train, items, backend, cache, progress=False)
        answers = [
            cache.get(DEFAULT_TEMPLATES.interests_request([by_id[i] for i in ids]).key("local", "tiny-1"))
            for ids in train["item_ids"]
        ]
        assert len(cache) == 3
        full = DEFAULT_TEMPLATES.interests_request([by_id[i] for i in ("A2", "A3", "A4", "A1")])
        assert full.key("local", "tiny-1") not in cache  # the held-out items were never shown
    parsed = [parse_interests(answer) for answer in answers]
    assert users.features == USER_FEATURES and users["user_id"] == ["U1", "U2", "U3"]
    assert users["interests"] == [p.interests for p in parsed]
    assert failures == [
        {"id": u, "task": "interests", "source": "local:tiny-1", "reason": p.failure, "raw": p.raw}
        for u, p in zip(users["user_id"], parsed, strict=True)
        if not p.ok
    ]
    assert [p.ok for p in parsed] == [False, True, False]  # what this random model does: two answers cut off

    templates = dataclasses.replace(DEFAULT_TEMPLATES, interests_max_new_tokens=3)
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        none, failures = mine_user_interests(train, items, backend, cache, templates=templates, progress=False)
    assert none.features == USER_FEATURES and none["interests"] == [[], [], []]  # still a list of strings
    assert [(f["id"], f["reason"]) for f in failures] == [("U1", CUT), ("U2", CUT), ("U3", CUT)]


# ----- judges -----
def _mined() -> Dataset:
    """Mined items as the miner writes them: a and c share their text, d has no descriptor."""
    rows = [
        {**ITEMS[0], "descriptors": ["gentle toner", "travel size"], "descriptor_confidences": [0.9, 0.3]},
        {**ITEMS[1], "descriptors": ["chip-free color"], "descriptor_confidences": [0.5]},
        {**ITEMS[2], "descriptors": ["gentle toner"], "descriptor_confidences": [0.8]},
        {**ITEMS[3], "descriptors": [], "descriptor_confidences": []},
    ]
    return Dataset.from_list(
        [{**r, "descriptor_sources": ["s"] * len(r["descriptors"])} for r in rows], features=MINED_FEATURES
    )


def test_grounding_scores_are_cached_log_likelihood_differences(tmp_path, tokenizer):
    items, backend = _mined(), _backend(tokenizer, seed=1)
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        scores = grounding_scores(items, backend, cache, batch_size=2)
        # (item text, descriptor) pairs a/gentle toner, a/travel size, b/chip-free color (c repeats a/gentle
        # toner), and the blank item with each of the three descriptors
        assert len(cache) == 6
        assert grounding_scores(items, backend, cache) == scores and len(cache) == 6  # read back, not recomputed
    pairs = [(n, d) for n, ds in enumerate(items["descriptors"]) for d in ds]
    real = backend.loglikelihood([(f"{DEFAULT_TEMPLATES.item_text(items[n])}\n{GROUNDING_CUE}", d) for n, d in pairs])
    blank = backend.loglikelihood([(f"{BLANK_ITEM}\n{GROUNDING_CUE}", d) for _, d in pairs])
    tokens = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for _, d in pairs]
    differences = [r - b for r, b in zip(real, blank, strict=True)]
    flat = [s for row in scores for s in row]
    assert [len(row) for row in scores] == [2, 1, 1, 0] and all(math.isfinite(s) for s in flat)
    assert flat == pytest.approx([x / n for x, n in zip(differences, tokens, strict=True)], abs=1e-5)
    assert scores[0][0] == scores[2][0]  # same text, same descriptor, one cached score
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        total = grounding_scores(items, backend, cache, per_token=False)  # the same cached log-likelihoods
        assert len(cache) == 6
    assert [s for row in total for s in row] == pytest.approx(differences, abs=1e-4)

    served = ServedBackend("http://127.0.0.1:9/v1", "m")
    with AnswerCache(tmp_path / "answers.sqlite") as cache, pytest.raises(ConfigError, match="needs a local model"):
        grounding_scores(items, served, cache)


def test_llm_judge_counts_unusable_answers_as_zero_and_records_them(tmp_path, tokenizer):
    items, backend = _mined(), _backend(tokenizer, seed=1)
    judge_key = lambda n, d: DEFAULT_TEMPLATES.judge_request(items[n], d).key("local", "tiny-1")  # noqa: E731
    report = JudgeReport("llm")
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        cache.put(judge_key(1, "chip-free color"), GenerationResult('{"label": 2}', "stop"))
        labels = llm_labels(items, backend, cache, report, progress=False)
        assert len(cache) == 3  # a and c ask the same question about "gentle toner"
        answers = {d: parse_label(cache.get(judge_key(0, d))) for d in ("gentle toner", "travel size")}
    assert all(p.ok for p in answers.values())  # the grammar makes the random model answer 0 or 1
    gentle, travel = answers["gentle toner"].label, answers["travel size"].label
    assert labels == [[gentle, travel], [0], [gentle], []]
    assert report.failures == [
        {
            "id": "b",
            "descriptor": "chip-free color",
            "reason": "does not match the JudgeLabel schema: label: Input should be 0 or 1 (got 2)",
            "raw": '{"label": 2}',
        }
    ]


def test_with_labels_adds_typed_columns_and_quality():
    items = _mined()
    judged = with_labels(items, [[1, 0], [1], [0], []], [[1.5, -0.5], [2.0], [-1.0], []])
    assert judged.features["descriptor_labels"] == List(Value("int8"))
    assert judged.features["descriptor_scores"] == List(Value("float32"))
    assert judged.features["quality"] == Value("float32")
    assert judged["descriptor_labels"] == [[1, 0], [1], [0], []]
    assert judged["quality"] == _f32([0.9 / 1.2, 1.0, 0.0, 0.0]) == _f32(quality_column(judged))
    relabelled = with_labels(judged, [[0, 1], [1], [1], []])  # replaces the labels and quality, keeps the scores
    assert relabelled["quality"] == _f32([0.3 / 1.2, 1.0, 1.0, 0.0])
    assert relabelled["descriptor_scores"] == judged["descriptor_scores"]
    assert all(0.0 <= q <= 1.0 for q in relabelled["quality"])


def test_rldi_classifier_learns_the_judge_labels_and_labels_in_the_judge_stage(tmp_path):
    from deepinterestgr.data import load_sample

    sample = load_sample().items.filter(lambda r: len(r["categories"]) >= 3).select(range(20))
    rows = [{**row, "descriptors": [row["categories"][-1].lower(), "a great gift for anyone"],
             "descriptor_confidences": [0.8, 0.8], "descriptor_sources": ["s", "s"]} for row in sample]  # fmt: skip
    mined = Dataset.from_list(rows, features=MINED_FEATURES)
    with pytest.raises(DataError, match="no `descriptor_labels` to learn from; judge a sample"):
        train_classifier(mined)
    judged = with_labels(mined, [[1, 0]] * len(mined))
    classifier = train_classifier(judged)
    assert classifier.report["pairs"] == 40 and classifier.report["positive_rate"] == 0.5
    assert classifier_labels(judged, classifier) == [[1, 0]] * 20  # it learned what it was taught

    # the judge stage with method classifier labels mined items with the saved classifier
    write_stage(tmp_path / "mined", {"stage": "mine"}, lambda tmp: mined.save_to_disk(tmp / "items"))
    config = JudgeConfig(method="classifier", classifier=str(classifier.save(tmp_path / "rldi")))
    run_judge(tmp_path / "mined", tmp_path / "judged", config, MineConfig(), console=QUIET)
    out = load_items(tmp_path / "judged", needs=("descriptor_labels", "quality"))
    assert out["descriptor_labels"] == [[1, 0]] * 20 and out["quality"] == _f32([0.5] * 20)
    assert read_manifest(tmp_path / "judged")["report"]["positive_rate"] == 0.5
    with pytest.raises(ConfigError, match=r"judge\.method classifier needs judge\.classifier"):
        run_judge(tmp_path / "mined", tmp_path / "j2", JudgeConfig(method="classifier"), MineConfig(), console=QUIET)


# ----- embedding text -----
def test_embed_items_uses_none_all_or_positive_descriptors():
    items = with_labels(_mined(), [[1, 0], [0], [1], []])
    texts = {}
    for use in ("none", "all", "positive"):
        embedded = embed_items(items, collaborative="off", descriptors=use, show_progress=False)
        texts[use] = embedded["embedding_text"]
    base = ["Brand: Alba Botanica. Categories: Skin Care > Face.", "Brand: OPI. Categories: Makeup > Nails."]
    base += [base[0], "Title: Rose lip balm. Categories: Makeup > Lips. Description: A tinted balm."]
    assert texts["none"] == base
    assert texts["all"] == [
        f"{base[0]} Interests: gentle toner, travel size.",
        f"{base[1]} Interests: chip-free color.",
        f"{base[0]} Interests: gentle toner.",
        base[3],
    ]
    assert texts["positive"] == [
        f"{base[0]} Interests: gentle toner.",
        base[1],
        f"{base[0]} Interests: gentle toner.",
        base[3],
    ]
    with pytest.raises(
        DataError, match=r"descriptors are not judged \(no `descriptor_labels`\); run `deepinterestgr judge`"
    ):
        embed_items(_mined(), collaborative="off", descriptors="positive", show_progress=False)


# ----- mine.bundled -----
def test_bundled_columns_need_the_bundled_file_covering_the_items(tmp_path, p5_dir):
    data = prepare("p5", p5_dir)
    data.save_to_disk(tmp_path / "prepared")
    path = tmp_path / "mined_items.parquet"
    with pytest.raises(
        DataError, match=r"mined_items.parquet does not exist; produce it with `python benchmarks/mine_beauty.py`"
    ):
        join_mined_columns(data.items, path)
    shipped = {"descriptors": [["x"], ["y"], ["z"]], "quality": [0.5, 1.0, 0.0]}
    Dataset.from_dict({"item_id": ["A4", "A1", "Z9"], **shipped}).to_parquet(str(path))
    with pytest.raises(DataError, match=r"mine.bundled: 2 items \(e.g. 'A2'\) are not in .*set mine.bundled to false"):
        join_mined_columns(data.items, path)
    Dataset.from_dict({"item_id": ["A4", "A3", "A1", "A2"], "quality": [0.25, 0.5, 0.75, 1.0]}).to_parquet(str(path))
    joined = join_mined_columns(data.items, path)
    assert joined["item_id"] == ["A1", "A2", "A3", "A4"] and joined["quality"] == [0.75, 1.0, 0.5, 0.25]

    # the stage with the file the package ships (absent until the mining run has produced it)
    bundled = sample_path() / BUNDLED_MINED
    why = "are not in" if bundled.is_file() else "does not exist; produce it"
    with pytest.raises(DataError, match=why):
        run_mine(tmp_path / "prepared", tmp_path / "mined", MineConfig(bundled=True), console=QUIET)


def test_bundled_user_interests_need_the_file_covering_the_train_users(tmp_path, p5_dir):
    train = prepare("p5", p5_dir).splits["train"]
    path = tmp_path / "user_interests.parquet"
    with pytest.raises(DataError, match=r"user_interests.parquet does not exist; produce it with .*mine_sample_users"):
        load_user_interests(train, path)
    users = sorted(train["user_id"])
    Dataset.from_dict({"user_id": users[1:], "interests": [["x"]] * (len(users) - 1)}).to_parquet(str(path))
    with pytest.raises(DataError, match=rf"1 users \(e.g. {users[0]!r}\) are not in .*set mine.bundled to false"):
        load_user_interests(train, path)
    shipped = {"user_id": ["someone-else", *users], "interests": [["y"], *([f"likes {u}"] for u in users)]}
    Dataset.from_dict(shipped).to_parquet(str(path))
    loaded = load_user_interests(train, path)
    assert dict(zip(loaded["user_id"], loaded["interests"], strict=True)) == {u: [f"likes {u}"] for u in users}


# ----- CLI -----
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def start_cli(*args: str) -> subprocess.Popen:
    """`deepinterestgr ARGS` in a subprocess (two may run side by side: each spends seconds importing)."""
    command = [sys.executable, "-m", "deepinterestgr", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return finish(start_cli(*args))


def _cached(path: Path, key: str) -> GenerationResult:
    with AnswerCache(path) as cache:
        return cache.get(key)


def test_cli_mine_judge_embed_resume_and_config_errors(tmp_path, p5_dir):
    run = tmp_path / "run"
    prepare("p5", p5_dir).save_to_disk(run / "prepared")
    model = build_tiny_chat_model(tmp_path / "tiny-chat", seed=1)
    source = f"local:{model}"
    config = tmp_path / "c.yaml"
    base = f"output_dir: {run}\nmine:\n  backends: [{{kind: local, model: {model}}}]\n  user_interests: true\n"
    config.write_text(base + "judge:\n  method: grounding\n  threshold: -1.0\n")  # a random model's scores are ~0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"output_dir: {run}\nmine:\n  backends: [{{kind: vllm, model: {model}}}]\n")

    # subprocesses where the process matters (entry point, model folders, stage folders); the same CLI app in
    # this process for the config error and the resume (each subprocess spends seconds importing torch)
    wrong = CliRunner().invoke(app, ["mine", "--config", str(bad)])
    assert wrong.exit_code == 2 and wrong.stdout == ""
    assert (
        wrong.stderr
        == f"error: {bad}: field 'mine.backends.0.kind': Input should be 'local' or 'served' (got 'vllm')\n"
    )
    mined = run_cli("mine", "--config", str(config))
    assert mined.returncode == 0, mined.stderr
    cache_path = run / CACHE_FILE
    items = load_items(run / "mined", needs=("descriptors", "descriptor_confidences", "descriptor_sources"))
    keys = [DEFAULT_TEMPLATES.descriptors_request(row).key("local", str(model)) for row in items]
    parsed = [parse_descriptors(_cached(cache_path, k), examples=EXAMPLES) for k in keys]
    assert items["descriptors"] == [p.descriptors for p in parsed]
    assert items["descriptor_sources"] == [[source] * len(p.descriptors) for p in parsed]
    assert [len(p.descriptors) for p in parsed] == [1, 1, 1, 1]  # what this random model writes here
    users = load_from_disk(str(run / "mined" / "users"))
    data = PreparedData.load_from_disk(run / "prepared")
    by_id = {row["item_id"]: row for row in data.items}
    histories = [[by_id[i] for i in ids] for ids in data.splits["train"]["item_ids"]]
    interests = [
        parse_interests(_cached(cache_path, DEFAULT_TEMPLATES.interests_request(h).key("local", str(model))))
        for h in histories
    ]
    assert users.features == USER_FEATURES and users["user_id"] == ["U1", "U2", "U3"]
    assert users["interests"] == [p.interests for p in interests]
    item_failures = [{"id": r["item_id"], "task": "descriptors", "source": source, "reason": p.failure, "raw": p.raw}
                     for r, p in zip(items, parsed, strict=True) if not p.ok]  # fmt: skip
    user_failures = [{"id": u, "task": "interests", "source": source, "reason": p.failure, "raw": p.raw}
                     for u, p in zip(users["user_id"], interests, strict=True) if not p.ok]  # fmt: skip
    failures = [json.loads(line) for line in (run / "mined" / "failures.jsonl").read_text().splitlines()]
    assert failures == item_failures + user_failures
    report = read_manifest(run / "mined")["report"]
    assert report["items"] == 4 and report["failures"] == len(item_failures)
    assert report["valid_rate"] == {source: sum(p.ok for p in parsed) / 4}
    stored = _rows(cache_path)
    assert len(stored) == 4 + 3  # four item texts, three user histories

    judged = run_cli("judge", "--config", str(config))
    assert judged.returncode == 0, judged.stderr
    out = load_items(run / "judged", needs=("descriptor_labels", "descriptor_scores", "quality"))
    assert out["descriptors"] == items["descriptors"]
    labels = grounding_labels(out, out["descriptor_scores"], threshold=-1.0)
    assert out["descriptor_labels"] == labels and labels == [[1], [1], [1], [1]]  # none restates its item
    assert out["quality"] == _f32(quality_column(out))
    assert load_from_disk(str(run / "judged" / "users")).to_list() == users.to_list()
    pairs = sum(map(len, items["descriptors"]))
    report = read_manifest(run / "judged")["report"]
    assert (report["method"], report["pairs"], report["positive_rate"], report["failures"]) == ("grounding", 4, 1.0, 0)
    # one cached score per distinct (item text, descriptor) and per distinct (blank item, descriptor)
    scored = len({(DEFAULT_TEMPLATES.item_text(r), d) for r in items for d in r["descriptors"]})
    assert len(_rows(cache_path)) == 7 + scored + len({d for ds in items["descriptors"] for d in ds})

    stored = _rows(cache_path)
    embedded = start_cli(
        "embed", "--data", str(run / "prepared"), "--out", str(run / "embedded"), "--items", str(run / "judged"),
        "--descriptors", "all", "--collaborative", "off",
    )  # fmt: skip
    again = CliRunner().invoke(app, ["mine", "--config", str(config)])  # resumes: every answer from the cache
    assert again.exit_code == 0, again.output
    assert _rows(cache_path) == stored
    assert load_items(run / "mined").to_list() == items.to_list()
    embedded = finish(embedded)
    assert embedded.returncode == 0, embedded.stderr
    texts = load_items(run / "embedded", needs=("embedding",))["embedding_text"]
    assert [t.partition(" Interests: ")[2] for t in texts] == [
        f"{', '.join(ds)}." if ds else "" for ds in items["descriptors"]
    ]

    # the llm judge through the stage function `deepinterestgr judge` calls (one subprocess less: each costs seconds)
    config.write_text(base + "judge:\n  method: llm\n")
    settings = PipelineConfig.from_yaml(config)
    run_judge(run / "mined", run / "judged", settings.judge, settings.mine, console=QUIET)
    out = load_items(run / "judged", needs=("descriptor_labels", "quality"))
    answers = [[parse_label(_cached(cache_path, DEFAULT_TEMPLATES.judge_request(r, d).key("local", str(model))))
                for d in r["descriptors"]] for r in items]  # fmt: skip
    assert out["descriptor_labels"] == [[p.label if p.ok else 0 for p in row] for row in answers]
    judge_failures = [json.loads(line) for line in (run / "judged" / "failures.jsonl").read_text().splitlines()]
    assert judge_failures == [
        {"id": r["item_id"], "descriptor": d, "reason": p.failure, "raw": p.raw}
        for r, row in zip(items, answers, strict=True)
        for d, p in zip(r["descriptors"], row, strict=True)
        if not p.ok
    ]
    report = read_manifest(run / "judged")["report"]
    assert (report["method"], report["pairs"], report["failures"]) == ("llm", pairs, len(judge_failures))


@pytest.mark.skipif(
    not (sample_path() / BUNDLED_MINED).is_file(),
    reason=f"{BUNDLED_MINED} is not produced yet (benchmarks/mine_beauty.py, then the sample README's cut)",
)
def test_bundled_columns_cover_the_sample_and_live_items_are_re_mined(tmp_path):
    from datasets import load_dataset

    prepare("p5").save_to_disk(tmp_path / "prepared")  # the bundled sample
    model = build_tiny_chat_model(tmp_path / "tiny-chat", seed=1)
    config = MineConfig(bundled=True, live_items=2, backends=[{"kind": "local", "model": str(model)}])
    run_mine(tmp_path / "prepared", tmp_path / "mined", config, console=QUIET)
    items = load_items(tmp_path / "mined", needs=("descriptors", "descriptor_labels", "quality"))
    shipped = load_dataset("parquet", data_files=str(sample_path() / BUNDLED_MINED), split="train")
    rows = {row["item_id"]: row for row in shipped}
    assert [rows[i]["descriptors"] for i in items["item_id"]] == items["descriptors"]
    assert [rows[i]["quality"] for i in items["item_id"]] == items["quality"]
    report = read_manifest(tmp_path / "mined")["report"]
    keys = [DEFAULT_TEMPLATES.descriptors_request(row).key("local", str(model)) for row in items.select(range(2))]
    live = [parse_descriptors(_cached(tmp_path / CACHE_FILE, k), examples=EXAMPLES).descriptors for k in keys]
    assert report["source"] == f"bundled ({BUNDLED_MINED})" and report["live"]["items"] == 2
    assert report["live"]["same_as_bundled"] == sum(
        a == b for a, b in zip(live, items["descriptors"][:2], strict=False)
    )
    run_judge(tmp_path / "mined", tmp_path / "judged", JudgeConfig(), config, console=QUIET)
    assert load_items(tmp_path / "judged")["descriptor_labels"] == items["descriptor_labels"]  # shipped labels kept


@pytest.mark.skipif(
    not (sample_path() / BUNDLED_USERS).is_file(),
    reason=f"{BUNDLED_USERS} is not produced yet (benchmarks/mine_sample_users.py)",
)
def test_bundled_user_interests_reach_the_judged_stage(tmp_path):
    from datasets import load_dataset, load_from_disk

    data = prepare("p5")  # the bundled sample
    data.save_to_disk(tmp_path / "prepared")
    config = MineConfig(bundled=True, user_interests=True)
    run_mine(tmp_path / "prepared", tmp_path / "mined", config, console=QUIET)
    run_judge(tmp_path / "mined", tmp_path / "judged", JudgeConfig(), config, console=QUIET)
    users = load_from_disk(str(tmp_path / "judged" / "users"))
    shipped = load_dataset("parquet", data_files=str(sample_path() / BUNDLED_USERS), split="train")
    assert sorted(users["user_id"]) == sorted(data.splits["train"]["user_id"])
    expected = dict(zip(shipped["user_id"], shipped["interests"], strict=True))
    assert all(expected[u] == i for u, i in zip(users["user_id"], users["interests"], strict=True))
    assert sum(map(bool, users["interests"])) > 0.9 * len(users)  # SmolLM2 answered for nearly every user
