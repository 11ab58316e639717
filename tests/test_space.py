"""The Gradio Space (spaces/deepinterestgr): its logic on a tiny pipeline run, its API through gradio_client, and its
page in headless Debian Chromium driven by Playwright.

One run is built per module with the real CLI (`deepinterestgr pipeline` on a 150-user slice of the bundled sample,
tiny RQ-VAE and recommender); one app process serves it (with a tiny random chat model as the Mine tab's backend)
for the API and browser tests. The browser test saves screenshots under test-artifacts/.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import importlib.util
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset

from deepinterestgr.data import sample_path
from deepinterestgr.data.sample import cut_p5_sample
from deepinterestgr.errors import ConfigError
from deepinterestgr.mining.local import LocalBackend
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES
from deepinterestgr.mining.quality import item_quality
from deepinterestgr.sid import SemanticIDMap
from deepinterestgr.space import InputError, Miner, SpaceData, load_from_env, load_hub, load_run
from deepinterestgr.space import explorer as ex
from deepinterestgr.space import mine as mn
from deepinterestgr.space import recommend as rc
from deepinterestgr.space.data import MISSING, catalogue
from tests.tiny_chat import (
    build_tiny_chat_model,
    tiny_chat_lm,
    tiny_chat_tokenizer,
    tiny_llava,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "spaces" / "deepinterestgr"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_CONFIG = """
output_dir: {out}
data: {{format: p5, path: {data}, max_history: 20}}
embed: {{collaborative_dim: 16}}
quantize: {{codebook_size: 16, hidden_dims: [32], latent_dim: 8, epochs: 3, warmup_epochs: 1}}
sft:
  backbone: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}
  epochs: 1
grpo: {{enabled: false}}
evaluate: {{max_users: 4, num_beams: 10}}
"""


# ----- fixtures -----
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """`deepinterestgr pipeline` on 150 users of the bundled sample (no mining, no GRPO), as a user runs it."""
    root = tmp_path_factory.mktemp("space")
    data = cut_p5_sample(sample_path(), root / "p5", users=150, seed=7)
    config = root / "config.yaml"
    config.write_text(RUN_CONFIG.format(out=root / "run", data=data))
    result = subprocess.run(
        [sys.executable, "-m", "deepinterestgr", "pipeline", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="module")
def data(run_dir) -> SpaceData:
    return load_run(run_dir)


@pytest.fixture(scope="module")
def tiny_miner_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space_url(run_dir, tiny_miner_dir, tmp_path_factory) -> Iterator[str]:
    """`python spaces/deepinterestgr/app.py` on a free port, configured by environment variables only."""
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {
        **os.environ,
        "DEEPINTERESTGR_RUN": str(run_dir),
        "DEEPINTERESTGR_MINER": f"local:{tiny_miner_dir}",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("GRADIO_SERVER_NAME", None)  # the app's own default: 127.0.0.1
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(SPACE / "app.py")], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"the Space exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Space did not answer on {url} within 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def first_user(data: SpaceData):
    return next(iter(data.users.values()))


# ----- the Space's files -----
def test_space_metadata_and_requirements():
    text = (SPACE / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (SPACE / meta["app_file"]).is_file()
    assert meta["sdk_version"] == importlib.metadata.version("gradio")  # the version the tests ran
    assert meta["license"] == "apache-2.0" and meta["models"] and meta["datasets"]
    requirements = (SPACE / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("deepinterestgr") for line in requirements)


def test_app_refuses_to_start_without_configuration(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("space_app", SPACE / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    for name in [n for n in os.environ if n.startswith("DEEPINTERESTGR_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exit_info:
        app.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to show: set DEEPINTERESTGR_RUN") and "DEEPINTERESTGR_MODEL" in err
    monkeypatch.setenv("DEEPINTERESTGR_RUN", str(SPACE))  # a folder, but no pipeline run
    monkeypatch.setenv("DEEPINTERESTGR_MINER", "SmolLM2")
    with pytest.raises(SystemExit):
        app.main()
    assert "DEEPINTERESTGR_MINER='SmolLM2': use local:<Hub id or folder>" in capsys.readouterr().err
    monkeypatch.delenv("DEEPINTERESTGR_MINER")
    with pytest.raises(SystemExit):
        app.main()
    assert "the sft stage has not finished" in capsys.readouterr().err


# ----- loading -----
def test_load_run_covers_the_catalogue_and_the_test_users(data, run_dir):
    sid_map = data.sid_map
    assert list(data.items) == sid_map.item_ids
    test = json.loads((run_dir / "prepared" / "stage.json").read_text())["stats"]
    assert len(data.users) == test["users"] == 150
    user = first_user(data)
    assert 1 <= len(user.history) <= data.max_history and user.target in data.items
    assert not data.has_descriptors and not data.has_quality
    assert all(info.descriptors is None and info.quality is None for info in data.items.values())
    assert data.source.endswith("(sft)")
    assert load_from_env({"DEEPINTERESTGR_RUN": str(run_dir)}).users == data.users


def test_load_errors_say_what_to_set(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="DEEPINTERESTGR_RUN to a `deepinterestgr pipeline` output folder"):
        load_from_env({})
    with pytest.raises(ConfigError, match="DEEPINTERESTGR_MODEL is set but DEEPINTERESTGR_DATASET is not"):
        load_from_env({"DEEPINTERESTGR_MODEL": "x/y"})
    with pytest.raises(ConfigError, match="not both"):
        load_from_env({"DEEPINTERESTGR_RUN": str(run_dir), "DEEPINTERESTGR_MODEL": "x/y"})
    with pytest.raises(ConfigError, match="no such folder"):
        load_run(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="grpo stage has not finished"):
        load_run(run_dir, stage="grpo")


def test_load_hub_layout_gives_the_same_users_and_items(data, run_dir, tmp_path):
    """A dataset folder in the pushed layout (configs "items" and "sequences", parquet) + the recommender folder:
    the test split rebuilt leave-last-out equals the pipeline's."""
    from datasets import load_from_disk

    folder = tmp_path / "dataset"
    (folder / "items").mkdir(parents=True)
    (folder / "sequences").mkdir()
    load_from_disk(str(run_dir / "sid" / "items")).remove_columns("embedding").to_parquet(
        folder / "items" / "train-00000.parquet"
    )
    load_from_disk(str(run_dir / "prepared" / "sequences")).to_parquet(folder / "sequences" / "train-00000.parquet")
    configs = [
        {"config_name": n, "data_files": [{"split": "train", "path": f"{n}/train-*.parquet"}]}
        for n in ("items", "sequences")
    ]
    (folder / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n")
    hub = load_hub(str(run_dir / "sft"), str(folder))
    assert hub.users == data.users
    assert hub.items == data.items
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot load its 'items' config"):
        load_hub(str(run_dir / "sft"), str(tmp_path / "empty"))


# ----- Recommend -----
def test_recommend_gives_ten_catalogue_items_with_their_sids(data):
    user = first_user(data)
    history = list(user.history)
    rows = rc.recommend(data, history)
    direct = data.recommender.recommend([history], k=10, num_beams=rc.NUM_BEAMS)[0]
    assert [r.item_id for r in rows] == [r.item_id for r in direct]
    assert [r.rank for r in rows] == list(range(1, 11)) and len({r.item_id for r in rows}) == 10
    for row in rows:
        assert row.sid == data.sid_map.tokens_of(row.item_id) and row.text == data.items[row.item_id].text
        assert row.descriptors == MISSING and row.quality == MISSING  # this run has no mining
    assert all(a.score >= b.score for a, b in itertools.pairwise(rows))
    kept = rc.recommend(data, history, exclude_history=True)
    assert [r.item_id for r in kept] == [
        r.item_id for r in data.recommender.recommend([history], num_beams=rc.NUM_BEAMS, exclude_history=True)[0]
    ]
    assert len(kept) == 10 and not {r.item_id for r in kept} & set(history)
    frame = rc.recommendations_frame(rows)
    assert list(frame.columns) == rc.RECOMMENDATION_COLUMNS and len(frame) == 10
    summary = rc.summary(data, history, rows, user)
    hit = [r.rank for r in rows if r.item_id == user.target]
    assert (f"ranked **{hit[0]}**" if hit else "not in the top 10") in summary and user.target in summary
    assert list(rc.history_frame(data, history)["item_id"]) == history


def test_history_and_user_inputs_are_validated(data):
    ids = list(data.items)
    assert rc.parse_history(data, f" {ids[0]},{ids[1]};\n{ids[2]} ") == ids[:3]
    for text, message in [
        ("", "the history is empty"),
        (f"{ids[0]} nope B0", "2 item id(s) not in the catalogue: 'nope', 'B0'"),
        (" ".join(ids[: data.max_history + 1]), f"this model reads at most {data.max_history}"),
        ("x" * 5000, "characters long"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            rc.parse_history(data, text)
    user = first_user(data)
    assert rc.user_history(data, f" {user.user_id} ") == user
    for value, message in [("", "choose a user"), ("nobody", "unknown user 'nobody'"), ("u" * 65, "at most 64")]:
        with pytest.raises(InputError, match=message):
            rc.user_history(data, value)


def test_item_search_add_and_remove(data):
    word = data.items[next(iter(data.items))].categories[0].split()[0].lower()
    found = rc.search_items(data, word.upper())
    assert 1 <= len(found) <= rc.MAX_SEARCH_RESULTS and all(word in info.search_text for info in found)
    some = list(data.items)[5]
    assert rc.search_items(data, some)[0].item_id == some  # an exact id comes first
    assert list(rc.search_frame(data, found)["SID"]) == [data.sid_map.tokens_of(i.item_id) for i in found]
    assert rc.search_items(data, "zzzz qqqq") == []
    for query, message in [("a", "at least 2 characters"), ("x" * 101, "at most 100")]:
        with pytest.raises(InputError, match=message):
            rc.search_items(data, query)
    ids = list(data.items)
    assert rc.add_item(data, f"{ids[0]} {ids[1]}", ids[2]) == f"{ids[0]} {ids[1]} {ids[2]}"
    with pytest.raises(InputError, match="unknown item"):
        rc.add_item(data, "", "nope")
    with pytest.raises(InputError, match="the history is full"):
        rc.add_item(data, " ".join(ids[: data.max_history]), ids[0])
    assert rc.remove_item(f"{ids[0]} {ids[1]} {ids[0]}", ids[0]) == f"{ids[0]} {ids[1]}"
    assert rc.remove_item(ids[0], "absent") == ids[0]


def _enriched(data: SpaceData, descriptors: dict[str, tuple[str, ...]]) -> SpaceData:
    """`data` with hand-written descriptors (quality 0.5) on some items, as a mined and judged run has."""
    items = dict(data.items)
    for item_id, values in descriptors.items():
        items[item_id] = dataclasses.replace(items[item_id], descriptors=values, quality=0.5)
    return dataclasses.replace(data, items=items, columns=data.columns | {"descriptors", "quality"})


def test_why_names_shared_descriptors_and_sid_prefixes(data):
    sid_map = data.sid_map
    codes = sid_map.codes
    level1 = int(np.bincount(codes[:, 0]).argmax())  # a level-1 code several items share
    a, b = [sid_map.item_ids[n] for n in np.flatnonzero(codes[:, 0] == level1)[:2]]
    other = next(sid_map.item_ids[n] for n in range(len(sid_map)) if codes[n, 0] != level1)
    enriched = _enriched(data, {a: ("keeps hair soft", "travel size"), other: ("travel size", "gift")})
    why = rc.explain(enriched, b, [a, other])
    assert f"SID prefix {ex.prefix_tokens(tuple(codes[sid_map.item_ids.index(b), :1]))}" in why
    assert "shared interests" not in why  # b has no descriptors
    why = rc.explain(enriched, other, [a])
    assert why.startswith("shared interests: travel size") and "gift" not in why
    assert rc.explain(enriched, a, [a]).startswith("already in the history")
    assert rc.format_descriptors(enriched.items[other]) == "travel size; gift"
    assert rc.format_quality(enriched.items[other]) == "0.50"
    many = dataclasses.replace(enriched.items[a], descriptors=tuple("abcdefg"))
    assert rc.format_descriptors(many) == "a; b; c; d; e (+2 more)"


def test_catalogue_reads_enrichment_columns(data):
    rows = [
        {"item_id": data.sid_map.item_ids[0], "brand": "B", "categories": ["C"], "descriptors": ["x", "y"],
         "descriptor_confidences": [0.9, 0.1], "descriptor_labels": [1, 0], "quality": 0.9},
        {"item_id": data.sid_map.item_ids[1], "brand": None, "categories": [], "descriptors": [],
         "descriptor_confidences": [], "descriptor_labels": [], "quality": 0.0},
    ]  # fmt: skip
    infos, columns = catalogue(Dataset.from_list(rows), data.recommender)
    first, second = infos[data.sid_map.item_ids[0]], infos[data.sid_map.item_ids[1]]
    assert (first.text, first.descriptors, first.labels, first.quality) == ("B · C", ("x", "y"), (1, 0), 0.9)
    assert second.descriptors == () and rc.format_descriptors(second) == MISSING
    assert infos[data.sid_map.item_ids[2]].text == data.sid_map.item_ids[2]  # not in the table: its id
    assert {"descriptors", "quality"} <= columns
    with pytest.raises(ValueError, match="do not belong together"):
        catalogue(Dataset.from_list([{"item_id": "elsewhere"}]), data.recommender)


# ----- SID explorer -----
def test_sid_prefix_parsing(data):
    sid_map = data.sid_map
    assert ex.parse_prefix(sid_map, "") == ()
    assert ex.parse_prefix(sid_map, "<a_3><b_5>") == ex.parse_prefix(sid_map, " 3, 5 ") == (3, 5)
    assert ex.parse_prefix(sid_map, "3/5/1") == (3, 5, 1)
    for text, message in [
        ("<b_3>", "must start at <a_..>"),
        ("<a_3>junk", "not a SID prefix"),
        ("3 x", "not a SID prefix"),
        ("1 2 3 0 4", "at most 4 codes"),
        (f"{sid_map.codebook_size}", "out of range"),
        ("9" * 201, "at most 200"),
    ]:
        with pytest.raises(InputError, match=message):
            ex.parse_prefix(sid_map, text)


def test_code_tree_counts_add_up(data):
    sid_map = data.sid_map
    root = ex.children(sid_map, ())
    assert [c.code for c in root] == sorted(set(sid_map.codes[:, 0].tolist()))
    assert sum(c.items for c in root) == len(sid_map)
    assert sum(c.collided for c in root) == int((sid_map.suffix >= 0).sum())
    top = max(root, key=lambda c: c.items)
    below = ex.children(sid_map, (top.code,))
    assert sum(c.items for c in below) == top.items and len(below) == top.next_codes
    assert all(c.token.startswith(f"<a_{top.code}><b_") for c in below)
    view = ex.explore(data, top.token)
    assert view.total_items == top.items and view.heading.startswith(f"Under <a_{top.code}>: {top.items:,} item(s)")
    assert set(view.items["SID"].map(lambda s: s.startswith(top.token))) == {True}
    assert list(ex.children_frame(root).columns) == ex.CHILD_COLUMNS
    unique = int(np.flatnonzero(sid_map.suffix < 0)[0])  # an item whose codes no other item has
    with pytest.raises(InputError, match="no item has a SID starting with"):
        ex.explore(data, ex.prefix_tokens((*sid_map.codes[unique].tolist(), 0)))  # it has no suffix
    assert f"**{len(sid_map):,} items**" in ex.overview(sid_map)


def test_collisions_list_every_shared_tuple_with_its_suffixes(data):
    sid_map = data.sid_map
    found = ex.collisions(sid_map)
    assert found, "a 16-code RQ-VAE over this catalogue has collisions"
    assert sum(c.items for c in found) == int((sid_map.suffix >= 0).sum())
    assert [c.items for c in found] == sorted((c.items for c in found), reverse=True)
    for collision in found:
        assert collision.items == len(collision.suffixes) > 1
        for item_id, suffix in collision.suffixes:
            assert sid_map.tokens_of(item_id) == collision.codes + suffix
    biggest = found[0]
    leaf = ex.explore(data, biggest.codes)  # a full tuple: one level down are the suffixes
    assert [c.items for c in leaf.children] == [1] * biggest.items
    assert leaf.heading.endswith(f"{biggest.items} collision suffix(es).")
    assert ex.explore(data, biggest.codes + biggest.suffixes[0][1]).total_items == 1
    frame = ex.collisions_frame(found, limit=3)
    assert len(frame) == min(3, len(found)) and frame["codes"][0] == biggest.codes


# ----- Mine -----
def test_backend_settings_and_item_text_parsing():
    local = mn.parse_backend("local:HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (local.kind, local.target) == ("local", "HuggingFaceTB/SmolLM2-135M-Instruct")
    served = mn.parse_backend("http://127.0.0.1:8000/v1", served_model="qwen")
    assert (served.kind, served.target, served.model) == ("served", "http://127.0.0.1:8000/v1", "qwen")
    assert mn.parse_backend("served:https://x.example/v1").kind == "served"
    for bad in ("SmolLM2", "local:", "served:ftp://x", "cloud:x"):
        with pytest.raises(ConfigError, match="use local:<Hub id or folder>"):
            mn.parse_backend(bad)
    item = mn.item_from_text("Title: Rose balm\nBrand: Acme\nCategories: Makeup > Lips, Balms\nSoft and tinted.")
    assert item["title"] == "Rose balm" and item["brand"] == "Acme"
    assert item["categories"] == ["Makeup", "Lips", "Balms"] and item["description"] == "Soft and tinted."
    assert mn.item_from_text("just some words")["description"] == "just some words"
    for text, message in [("  ", "paste an item's text"), ("x" * 2001, "at most 2,000")]:
        with pytest.raises(InputError, match=message):
            mn.item_from_text(text)


def test_unconfigured_miner_says_how_to_configure():
    miner = Miner.from_env({})
    assert not miner.configured and "DEEPINTERESTGR_MINER" in miner.describe()
    with pytest.raises(InputError, match="Mining is not configured"):
        miner.mine("Title: x")
    assert Miner.from_env({"DEEPINTERESTGR_MINER": "local:m"}).describe().startswith("Descriptors from local model m")


def test_mining_with_a_local_model_labels_and_weighs_descriptors(data):
    tokenizer = tiny_chat_tokenizer()
    backend = LocalBackend.from_model(tiny_chat_lm(tokenizer), tokenizer, model_id="tiny-chat")
    miner = Miner(backend)
    text = "Title: Argan oil shampoo\nBrand: Acme\nCategories: Hair Care > Shampoos"
    result = miner.mine(text)
    assert result.failure is None and result.descriptors and result.caption is None
    assert result.judge.startswith("grounding") and result.source == "local:tiny-chat"
    for d in result.descriptors:
        assert 0.0 <= d.confidence <= 1.0 and d.label == int(d.score > 0.0)
    labels = [d.label for d in result.descriptors]
    assert result.quality == pytest.approx(item_quality(labels, [d.confidence for d in result.descriptors]))
    again = miner.mine(text)  # from the answer cache
    assert again == dataclasses.replace(result, seconds=again.seconds)
    assert list(mn.descriptors_frame(result).columns) == mn.DESCRIPTOR_COLUMNS
    assert "**Quality q =" in mn.mined_summary(result)
    with pytest.raises(InputError, match="photo captions need DEEPINTERESTGR_CAPTIONER"):
        miner.mine(text, image="photo.png")
    item_id = next(iter(data.items))
    assert mn.catalogue_text(data.items, item_id) == DEFAULT_TEMPLATES.item_text(data.items[item_id].facts())
    with pytest.raises(InputError, match="unknown item"):
        mn.catalogue_text(data.items, "nope")


def test_an_unusable_answer_is_reported_with_its_raw_text():
    tokenizer = tiny_chat_tokenizer()
    free = LocalBackend.from_model(tiny_chat_lm(tokenizer), tokenizer, model_id="tiny-free", constrain=False)
    result = Miner(free).mine("Title: Argan oil shampoo")  # no grammar: a random model writes no JSON
    assert result.descriptors == [] and result.quality is None and result.raw
    assert result.failure.startswith(("malformed JSON", "cut off at the token limit"))
    assert mn.mined_summary(result).startswith(f"No usable descriptors from local:tiny-free: {result.failure}")
    assert len(mn.descriptors_frame(result)) == 0


def _tiny_image_text_backend() -> LocalBackend:
    model, processor = tiny_llava()
    return LocalBackend.from_model(model, processor, model_id="tiny-llava")


def test_a_photo_goes_to_the_captioner_and_a_caption_joins_the_prompt():
    tokenizer = tiny_chat_tokenizer()
    miner = Miner(LocalBackend.from_model(tiny_chat_lm(tokenizer), tokenizer, model_id="tiny-chat"),
                  _tiny_image_text_backend())  # fmt: skip
    assert miner.can_caption
    photo = Path(importlib.util.find_spec("gradio").submodule_search_locations[0]) / "media_assets/images/bus.png"
    with_photo = miner.mine("Title: Toy bus", image=str(photo))
    # a random captioner never ends its caption: the failure is reported, the descriptors are mined without it
    assert with_photo.caption is None and with_photo.caption_failure.startswith("cut off at the token limit")
    assert with_photo.descriptors and "No caption for the photo: cut off" in mn.mined_summary(with_photo)
    missing = miner.mine("Title: Toy bus", image=str(photo.with_name("absent.png")))
    assert "cannot open image" in missing.caption_failure
    without = miner.mine("Title: Toy bus")
    assert without.caption is None and without.caption_failure is None
    item = mn.item_from_text("Title: Toy bus\nPhoto: a red double-decker bus")
    assert item["caption"] == "a red double-decker bus"
    assert "Photo: a red double-decker bus" in DEFAULT_TEMPLATES.descriptors_request(item).messages[-1]["content"]
    assert miner.mine("Title: Toy bus\nPhoto: a red double-decker bus").caption == "a red double-decker bus"
    with pytest.raises(InputError, match="no item facts"):
        miner.mine("Brand:")


# ----- the running app: API and browser -----
def test_api_recommend_sid_explorer_and_mine(space_url, data):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(space_url, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/user_history", "/recommend", "/search_items", "/sid_prefix", "/mine", "/item_text"} <= set(endpoints)

    user = first_user(data)
    history_text, _, info = client.predict(user.user_id, api_name="/user_history")
    assert history_text.split() == list(user.history) and user.user_id in info
    table, history_table, summary = client.predict(history_text, user.user_id, api_name="/recommend")
    assert table["headers"] == rc.RECOMMENDATION_COLUMNS
    expected = [r.item_id for r in rc.recommend(data, list(user.history), exclude_history=True)]
    assert [row[1] for row in table["data"]] == expected  # the same model, the same ten items (the box's default)
    table, _, _ = client.predict(history_text, user.user_id, False, api_name="/recommend")
    assert [row[1] for row in table["data"]] == [r.item_id for r in rc.recommend(data, list(user.history))]
    assert [row[1] for row in history_table["data"]] == list(user.history)
    assert user.target in summary
    with pytest.raises(AppError, match="not in the catalogue: 'nope'"):
        client.predict("nope", "", api_name="/recommend")

    prefix, heading, children, _, _, down = client.predict("", api_name="/sid_prefix")
    root = ex.children(data.sid_map, ())
    assert prefix == "" and heading.startswith(f"Under the root: {len(data.sid_map):,} item(s)")
    assert [row[0] for row in children["data"]] == [c.token for c in root]
    assert [value for _, value in down["choices"]] == [c.token for c in root]
    prefix, heading, children, *_ = client.predict(root[0].token, api_name="/sid_prefix")
    assert prefix == root[0].token and all(row[0].startswith(root[0].token) for row in children["data"])
    with pytest.raises(AppError, match="not a SID prefix"):
        client.predict("<a_1>junk", api_name="/sid_prefix")

    caption, descriptors, mined = client.predict("Title: Rose lip balm\nBrand: Acme", api_name="/mine")
    assert caption == "—" and descriptors["headers"] == mn.DESCRIPTOR_COLUMNS
    assert descriptors["data"] and all(row[2] in (0, 1) for row in descriptors["data"])
    assert "**Quality q =" in mined
    with pytest.raises(AppError, match="at most 2,000"):
        client.predict("x" * 2001, api_name="/mine")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "the browser test needs Debian's Chromium: run `make browser` (`make test` does) or "
            "`apt-get install -y chromium`; never `playwright install`"
        )
    return path


def test_browser_pick_user_recommend_and_explore_sids(space_url, data):
    chromium = _chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright's Python package: pip install -e '.[dev]'")
    ARTIFACTS.mkdir(exist_ok=True)
    # a user whose plain top 10 holds a history item, so that unticking the box must change the table
    user, with_history = next(
        (u, ranked)
        for u in data.users.values()
        if set(ranked := [r.item_id for r in rc.recommend(data, list(u.history))]) & set(u.history)
    )
    expected = [r.item_id for r in rc.recommend(data, list(user.history), exclude_history=True)]  # the box is ticked
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(space_url, wait_until="domcontentloaded")
            picker = page.locator("#user input")
            picker.click()
            picker.fill(user.user_id)
            page.get_by_role("option", name=user.user_id, exact=True).click()
            expect(page.locator("#history-ids textarea")).to_have_value(" ".join(user.history), timeout=30_000)
            page.locator("#recommend-button").click()
            rows = page.locator("#recommendations [role=row]:has([role=gridcell])")
            expect(rows).to_have_count(10, timeout=60_000)
            shown = [row.locator("[role=gridcell]").nth(1).inner_text().strip() for row in rows.all()]
            assert shown == expected
            sids = [row.locator("[role=gridcell]").nth(3).inner_text().strip() for row in rows.all()]
            assert sids == [data.sid_map.tokens_of(i) for i in expected]
            expect(page.locator("#recommend-summary")).to_contain_text(user.target)
            recommend_shot = ARTIFACTS / "space-recommend.png"
            page.screenshot(path=str(recommend_shot), full_page=True)
            page.locator("#exclude-history input").uncheck()
            page.locator("#recommend-button").click()
            for cell, item_id in zip(rows.all(), with_history, strict=True):  # the table refreshes row by row
                expect(cell.locator("[role=gridcell]").nth(1)).to_have_text(item_id, timeout=60_000)

            page.get_by_role("tab", name="SID explorer").click()
            codes = page.locator("#sid-children [role=row]:has([role=gridcell])")
            root = ex.children(data.sid_map, ())
            expect(codes.first).to_be_visible(timeout=30_000)
            assert codes.first.locator("[role=gridcell]").first.inner_text().strip() == root[0].token
            expect(page.locator("#sid-heading")).to_contain_text(f"{len(root)} level-1 code(s)")
            explorer_shot = ARTIFACTS / "space-sid-explorer.png"
            page.screenshot(path=str(explorer_shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {recommend_shot} {explorer_shot}")


def test_per_item_suffixes_list_only_shared_tuples_as_collisions(data):
    sid_map = data.sid_map
    per_item = SemanticIDMap.from_codes(
        sid_map.item_ids, sid_map.codes, codebook_size=sid_map.codebook_size, suffix="item"
    )
    expected = [(c.codes, c.items) for c in ex.collisions(sid_map)]
    assert [(c.codes, c.items) for c in ex.collisions(per_item)] == expected
    assert f"({len(per_item):,} items carry a suffix" in ex.overview(per_item)
    unique = int(np.flatnonzero(sid_map.suffix < 0)[0])
    recommender = copy.copy(data.recommender)  # the explorer reads only the map
    recommender.sid_map = per_item
    leaf = ex.explore(
        dataclasses.replace(data, recommender=recommender), ex.prefix_tokens(sid_map.codes[unique].tolist())
    )
    assert leaf.total_items == 1 and leaf.heading.endswith("1 item suffix(es).")
