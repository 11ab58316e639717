"""Hub round trips against the local Hub server (tests/hub_server.py) with the real clients.

A tiny pipeline run is built with the real stage functions, pushed with the CLI in a subprocess (HF_ENDPOINT,
HF_TOKEN, a temporary HF_HOME and HF_HUB_DISABLE_XET=1 set for it), then loaded back in a second fresh process by
`datasets.load_dataset`, `RQVAEModel.from_pretrained`, `AutoModel.from_pretrained(trust_remote_code=True)` and
`GenerativeRecommender.from_pretrained`, and compared here with the local artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset, Features, List, Value, load_from_disk
from huggingface_hub import DatasetCardData, HfApi, HfFileSystem
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file
from typer.testing import CliRunner

from deepinterestgr.artifacts import write_stage
from deepinterestgr.cli import app
from deepinterestgr.config import EvaluateSection, QuantizeConfig
from deepinterestgr.data import PreparedData, load_sample
from deepinterestgr.hub import HubError, hub_items, push_dataset, push_recommender, render_card
from deepinterestgr.recommender.arguments import BackboneConfig, RecommenderSFTArguments
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.rl.arguments import GRPOArguments
from deepinterestgr.sid import RQVAEModel
from deepinterestgr.stages import run_evaluate, run_grpo, run_quantize, run_sft
from tests.hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "tester"  # the server's test user: `push` without --namespace uses the token's user
HISTORIES = 4  # test-split users whose recommendations are compared


def _enriched(items: Dataset, seed: int = 0) -> Dataset:
    """The columns mine/judge/embed add, with their real types (values drawn at random: no LLM in this test)."""
    rng = np.random.default_rng(seed)
    n = len(items)
    counts = rng.integers(1, 4, n)
    ids = items["item_id"]
    descriptors = [[f"descriptor {k} of {item}" for k in range(c)] for item, c in zip(ids, counts, strict=True)]
    confidences = [rng.uniform(0.2, 1.0, c).astype(np.float32).tolist() for c in counts]
    labels = [rng.integers(0, 2, c).tolist() for c in counts]
    quality = [float(np.dot(c, y) / np.sum(c)) for c, y in zip(confidences, labels, strict=True)]
    centers = rng.normal(size=(6, 12))
    embedding = (centers[rng.integers(0, 6, n)] + 0.1 * rng.normal(size=(n, 12))).astype(np.float32)
    columns = {
        "caption": [f"a photo of {b or 'an item'}" for b in items["brand"]],
        "descriptors": descriptors,
        "descriptor_confidences": confidences,
        "descriptor_labels": labels,
        "quality": quality,
        "text_embedding": embedding.tolist(),
        "embedding": embedding.tolist(),
    }
    for name, values in columns.items():
        items = items.add_column(name, values)
    types = {"descriptor_confidences": List(Value("float32")), "descriptor_labels": List(Value("int8"))}
    return items.cast(Features({**items.features, **types, "quality": Value("float32")}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run folder: prepared (real Amazon sample users), embedded, sid, sft, grpo, evaluation/{sft,grpo}."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    sample = load_sample()
    sequences = sample.sequences.select(range(24))
    used = {item for seq in sequences["item_ids"] for item in seq}
    items = sample.items.filter(lambda row: row["item_id"] in used)
    PreparedData.from_tables(items, sequences, max_history=10, source=sample.source).save_to_disk(run / "prepared")
    embedded = _enriched(items)
    manifest = {"stage": "embed", "config": {"model": None, "collaborative": "off"}, "fused": False}
    write_stage(run / "embedded", manifest, lambda tmp: embedded.save_to_disk(str(tmp / "items")))
    quick = QuantizeConfig(codebook_size=8, hidden_dims=[16], latent_dim=4, epochs=4, warmup_epochs=1, batch_size=64)
    run_quantize(run / "embedded", run / "sid", quick, console=_quiet())
    backbone = BackboneConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0)
    sft = RecommenderSFTArguments(backbone=backbone, epochs=3, batch_size=16, max_history=5, logging_steps=50)
    run_sft(run / "prepared", run / "sid", run / "sft", sft)
    grpo = GRPOArguments(
        rewards=["exact", "valid", "prefix"], group_size=4, prompts_per_step=2, max_prompts=8, epochs=1, max_history=5
    )
    run_grpo(run / "prepared", run / "sid", run / "sft", run / "grpo", grpo)
    evaluate = EvaluateSection(num_beams=20)
    for stage in ("sft", "grpo"):
        run_evaluate([run / stage], run / "prepared", run / "evaluation" / stage, evaluate, console=_quiet())
    return run


def _quiet():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubServer(tmp_path_factory.mktemp("hub")).start()
    yield server
    server.stop()


def client_env(hub: HubServer, home: Path) -> dict[str, str]:
    """This process's environment minus any HF settings, plus the ones that point the clients at `hub`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    return {**env, **hub.env(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def pushed(hub, run_dir, tmp_path_factory) -> dict:
    """`deepinterestgr push --run ... --private` in a fresh process (namespace: the token's user); output and shas."""
    home = tmp_path_factory.mktemp("hf_home_push")
    result = subprocess.run(
        [sys.executable, "-m", "deepinterestgr", "push", "--run", str(run_dir), "--private"],
        capture_output=True,
        text=True,
        env=client_env(hub, home),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shas = dict(re.findall(r"^(\w+): \S+ @ ([0-9a-f]{40})$", result.stdout, re.M))
    return {"result": result, "shas": shas}


CLIENT = r'''
"""Load what was pushed, with the real clients, then push a changed version and load both revisions."""
import json, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
args = json.loads(sys.argv[1])
out = Path(args["out"])
ns = args["namespace"]

# 1. the RQ-VAE by remote code, before the deepinterestgr package is imported
from transformers import AutoModel

remote = AutoModel.from_pretrained(f"{ns}/tiny-run-sid-tokenizer", trust_remote_code=True)
x = torch.tensor(args["embeddings"], dtype=torch.float32)
(out / "remote.json").write_text(json.dumps({
    "module": type(remote).__module__,
    "package_imported": "deepinterestgr" in sys.modules,
    "codes": remote.get_codes(x).tolist(),
}))

# 2. the dataset, the RQ-VAE and the recommender by their Hub ids
from datasets import load_dataset
from safetensors.torch import save_file

from deepinterestgr.hub import load_hub_dataset, push_dataset, push_tokenizer
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.sid import RQVAEModel, SemanticIDTokenizer

data = f"{ns}/tiny-run-items"
items = load_dataset(data, "items", split="train")
sequences = load_dataset(data, "sequences", split="train")
(out / "items.json").write_text(json.dumps(items.to_list()))
(out / "sequences.json").write_text(json.dumps(sequences.to_list()))
default = load_dataset(data, split="train")  # `items` is the default config
(out / "default_config.json").write_text(json.dumps(default.column_names))

rqvae = RQVAEModel.from_pretrained(f"{ns}/tiny-run-sid-tokenizer")
save_file({k: v.contiguous() for k, v in rqvae.state_dict().items()}, str(out / "rqvae.safetensors"))
tokenizer = SemanticIDTokenizer.from_pretrained(f"{ns}/tiny-run-sid-tokenizer", revision=args["shas"]["tokenizer"])
(out / "tokens.json").write_text(json.dumps({i: tokenizer.tokens_of(i) for i in items["item_id"]}))

repo = f"{ns}/tiny-run-recommender"
recommender = GenerativeRecommender.from_pretrained(repo)
def recs(rec):
    return [[[r.item_id, r.score] for r in row] for row in rec.recommend(args["histories"], k=5, num_beams=10)]
(out / "recs.json").write_text(json.dumps(recs(recommender)))

# 3. a namespace the token may not write to: refused before anything is uploaded
from deepinterestgr.hub import HubError

try:
    push_dataset(items, sequences, "someone-else/tiny-run-items")
    refused = None
except HubError as err:
    refused = str(err)
(out / "refused.json").write_text(json.dumps(refused))
org = push_dataset(items, sequences, "deepinterestgr-test/tiny-run-items")  # an organisation the user belongs to
(out / "org.json").write_text(json.dumps(org.oid))

# 4. second pushes: a changed dataset, changed weights, an unchanged tokenizer
changed = items.map(lambda row, n: {"title": "changed title" if n == 0 else row["title"]}, with_indices=True)
second = {"dataset": push_dataset(changed, sequences, data).oid}
with torch.no_grad():
    recommender.model.get_input_embeddings().weight.mul_(-1.0)
second["recommender"] = recommender.push_to_hub(repo, metrics=args["metrics"]).oid
tokenizer_folder = Path(args["tokenizer_folder"])
second["tokenizer"] = push_tokenizer(tokenizer_folder, f"{ns}/tiny-run-sid-tokenizer").oid  # a new card
second["tokenizer_again"] = push_tokenizer(tokenizer_folder, f"{ns}/tiny-run-sid-tokenizer").oid
# a branch: created from main, the commit lands there only
branch = push_tokenizer(tokenizer_folder, f"{ns}/tiny-run-sid-tokenizer", revision="v2", license="apache-2.0")
second["tokenizer_branch"] = branch.oid
(out / "second.json").write_text(json.dumps(second))

first = args["shas"]
pinned_items, _ = load_hub_dataset(data, revision=first["dataset"])
latest_items, _ = load_hub_dataset(data)
(out / "pinned_items.json").write_text(json.dumps(pinned_items.to_list()))
(out / "latest_items.json").write_text(json.dumps(latest_items.to_list()))
pinned = GenerativeRecommender.from_pretrained(repo, revision=first["recommender"])
(out / "pinned_recs.json").write_text(json.dumps(recs(pinned)))
latest = GenerativeRecommender.from_pretrained(repo)
(out / "latest_embeddings_negated.json").write_text(json.dumps(bool(torch.equal(
    latest.model.get_input_embeddings().weight, -pinned.model.get_input_embeddings().weight
))))
'''


@pytest.fixture(scope="module")
def loaded(hub, run_dir, pushed, tmp_path_factory) -> Path:
    """Run CLIENT in a fresh process; the folder of what it loaded."""
    out = tmp_path_factory.mktemp("loaded")
    items = load_from_disk(str(run_dir / "sid" / "items"))
    test = PreparedData.load_from_disk(run_dir / "prepared").splits["test"]
    args = {
        "out": str(out),
        "namespace": NAMESPACE,
        "shas": pushed["shas"],
        "embeddings": items["embedding"][:16],
        "histories": test["history"][:HISTORIES],
        "metrics": str(run_dir / "evaluation" / "grpo" / "metrics.json"),
        "tokenizer_folder": str(run_dir / "sid" / "tokenizer"),
    }
    script = out / "client.py"
    script.write_text(CLIENT)
    home = tmp_path_factory.mktemp("hf_home_load")
    result = subprocess.run(
        [sys.executable, str(script), json.dumps(args)],
        capture_output=True,
        text=True,
        env=client_env(hub, home),
        timeout=400,
        cwd=out,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (out / "client.log").write_text(result.stdout + result.stderr)
    return out


def _api(hub: HubServer, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token if token is None else token)


def test_cli_push_is_one_commit_per_repo_and_never_shows_the_token(hub, pushed):
    result = pushed["result"]
    assert set(pushed["shas"]) == {"dataset", "tokenizer", "recommender"}, result.stdout
    for kind, repo_type, repo_id in [
        ("dataset", "dataset", f"{NAMESPACE}/tiny-run-items"),
        ("tokenizer", "model", f"{NAMESPACE}/tiny-run-sid-tokenizer"),
        ("recommender", "model", f"{NAMESPACE}/tiny-run-recommender"),
    ]:
        url = f"{hub.url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        assert f"{kind}: {url} @ {pushed['shas'][kind]}" in result.stdout
        # the history as the server keeps it: the repo's initial commit, then exactly one commit for the push
        history = hub.commits(repo_id, repo_type, revision=pushed["shas"][kind])
        assert [c["title"] for c in history][1:] == ["initial commit"]
        assert history[0]["id"] == pushed["shas"][kind]
    assert hub.token not in result.stdout + result.stderr
    files = hub.state.repos[("model", f"{NAMESPACE}/tiny-run-sid-tokenizer")].commits[pushed["shas"]["tokenizer"]]
    assert set(files["files"]) == {
        ".gitattributes", "README.md", "config.json", "model.safetensors", "sid_map.json", "sid_quality.json",
        "configuration_rqvae.py", "modeling_rqvae.py",
    }  # fmt: skip
    assert files["files"]["model.safetensors"]["lfs"] is not None  # binary weights went through LFS
    # --private: the repos exist for the token's user, not for anonymous clients
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, token=False).repo_info(f"{NAMESPACE}/tiny-run-recommender")
    assert _api(hub).repo_info(f"{NAMESPACE}/tiny-run-recommender").private is True


def test_a_run_with_per_item_suffixes_trains_evaluates_and_is_carded(hub, run_dir, tmp_path):
    """quantize.suffix: item through the stages, trained with TRL's full softmax: every SID ends in its own code, the
    recommender uses them, and the pushed cards say which suffix kind the SIDs have and how the LM was trained."""
    quick = QuantizeConfig(
        codebook_size=8, hidden_dims=[16], latent_dim=4, epochs=4, warmup_epochs=1, batch_size=64, suffix="item"
    )
    run_quantize(run_dir / "embedded", tmp_path / "sid", quick, console=_quiet())
    sids = load_from_disk(str(tmp_path / "sid" / "items"))["sid"]
    assert {len(sid) for sid in sids} == {4} and len({sid[-1] for sid in sids}) == len(sids)
    backbone = BackboneConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0)
    sft = RecommenderSFTArguments(
        backbone=backbone, epochs=1, batch_size=16, max_history=5, logging_steps=50, sid_softmax="vocabulary"
    )
    run_sft(run_dir / "prepared", tmp_path / "sid", tmp_path / "sft", sft)
    recommender = GenerativeRecommender.from_pretrained(tmp_path / "sft")
    assert recommender.sid_map.per_item_suffix and f"<d_{len(sids) - 1}>" in recommender.tokenizer.get_vocab()
    assert recommender.sid_softmax == "vocabulary"
    result = run_evaluate(
        [tmp_path / "sft"], run_dir / "prepared", tmp_path / "eval", EvaluateSection(exclude_history=True),
        console=_quiet(),
    )  # fmt: skip
    assert result["runs"][0]["users"] == 24 and "NDCG@10" in result["summary"]
    assert "history items excluded" in (tmp_path / "eval" / "metrics.md").read_text()
    recs = recommender.recommend([recommender.sid_map.item_ids[:3]], k=5)[0]
    assert len({r.item_id for r in recs}) == 5 and all(r.item_id in recommender.sid_map for r in recs)
    repos = {"tokenizer": f"{NAMESPACE}/per-item-sid-tokenizer", "recommender": f"{NAMESPACE}/per-item-recommender"}
    code = (
        "from deepinterestgr.hub import push_recommender, push_tokenizer\n"
        f"push_tokenizer({str(tmp_path / 'sid' / 'tokenizer')!r}, {repos['tokenizer']!r})\n"
        f"push_recommender({str(tmp_path / 'sft')!r}, {repos['recommender']!r}, "
        f"metrics={str(tmp_path / 'eval' / 'metrics.json')!r})\n"
    )
    env = client_env(hub, tmp_path / "hf_home")
    pushed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    _, tokenizer_card = _card(hub, repos["tokenizer"], "main")
    _, recommender_card = _card(hub, repos["recommender"], "main")
    assert f"| per-item suffix | one extra code (`<d_k>`) for every item, its own: {len(sids)} suffix codes |" in (
        tokenizer_card
    )
    assert "collision suffix" not in tokenizer_card and "one suffix code per item" in recommender_card
    assert "catalogue softmax" not in recommender_card
    assert "| test (history excluded) | 24 | 20 | 1 |" in recommender_card


def test_dataset_round_trip_gives_identical_rows(run_dir, loaded):
    local_items = hub_items(load_from_disk(str(run_dir / "sid" / "items")))
    local_sequences = load_from_disk(str(run_dir / "prepared" / "sequences"))
    hub_rows = json.loads((loaded / "items.json").read_text())
    assert hub_rows == local_items.to_list()
    assert json.loads((loaded / "sequences.json").read_text()) == local_sequences.to_list()
    assert "embedding" not in hub_rows[0] and "text_embedding" not in hub_rows[0]  # big vectors stay home
    enriched = {"caption", "descriptors", "descriptor_confidences", "descriptor_labels", "quality", "sid"}
    assert enriched <= set(hub_rows[0])
    assert json.loads((loaded / "default_config.json").read_text()) == local_items.column_names


def test_rqvae_round_trip_is_bit_equal_also_by_remote_code(run_dir, loaded):
    local = RQVAEModel.from_pretrained(run_dir / "sid" / "tokenizer")
    remote_state = load_file(str(loaded / "rqvae.safetensors"))
    assert set(remote_state) == set(local.state_dict())
    for name, tensor in local.state_dict().items():
        assert torch.equal(tensor, remote_state[name]), name
    remote = json.loads((loaded / "remote.json").read_text())
    assert remote["module"].startswith("transformers_modules") and not remote["package_imported"]
    items = load_from_disk(str(run_dir / "sid" / "items"))
    embeddings = torch.tensor(items["embedding"][:16])
    assert remote["codes"] == local.get_codes(embeddings).tolist()
    tokens = json.loads((loaded / "tokens.json").read_text())
    assert all(tokens[i] == "".join(f"<{'abcd'[n]}_{c}>" for n, c in enumerate(s)) for i, s in zip(
        items["item_id"], items["sid"], strict=True))  # fmt: skip


def test_recommender_round_trip_gives_identical_recommendations(run_dir, loaded):
    torch.set_num_threads(1)
    local = GenerativeRecommender.from_pretrained(run_dir / "grpo")  # push_run picks grpo over sft
    histories = PreparedData.load_from_disk(run_dir / "prepared").splits["test"]["history"][:HISTORIES]
    expected = [[[r.item_id, r.score] for r in row] for row in local.recommend(histories, k=5, num_beams=10)]
    assert json.loads((loaded / "recs.json").read_text()) == expected


def test_pinned_revisions_load_the_first_push(hub, pushed, loaded):
    first, second = pushed["shas"], json.loads((loaded / "second.json").read_text())
    assert second["dataset"] != first["dataset"] and second["recommender"] != first["recommender"]
    assert second["tokenizer"] != first["tokenizer"]  # same weights, but a card without the run's details
    assert second["tokenizer_again"] == second["tokenizer"]  # nothing changed: no new commit
    pinned = json.loads((loaded / "pinned_items.json").read_text())
    latest = json.loads((loaded / "latest_items.json").read_text())
    assert latest[0]["title"] == "changed title" and pinned[0]["title"] != "changed title"
    assert latest[1:] == pinned[1:] == json.loads((loaded / "items.json").read_text())[1:]
    assert json.loads((loaded / "pinned_recs.json").read_text()) == json.loads((loaded / "recs.json").read_text())
    assert json.loads((loaded / "latest_embeddings_negated.json").read_text())
    refs = hub.state.repos[("model", f"{NAMESPACE}/tiny-run-sid-tokenizer")].refs
    assert refs == {"main": second["tokenizer"], "v2": second["tokenizer_branch"]}
    assert hub.commits(f"{NAMESPACE}/tiny-run-sid-tokenizer", revision="v2")[1]["id"] == second["tokenizer"]
    api = _api(hub)
    for repo_id, repo_type, commits in [
        (f"{NAMESPACE}/tiny-run-items", "dataset", 3),
        (f"{NAMESPACE}/tiny-run-recommender", "model", 3),
        (f"{NAMESPACE}/tiny-run-sid-tokenizer", "model", 3),
    ]:
        assert len(api.list_repo_commits(repo_id, repo_type=repo_type)) == commits, repo_id
    # GenerativeRecommender.push_to_hub wrote a card with the metrics in the same commit as the weights
    files = api.list_repo_files(f"{NAMESPACE}/tiny-run-recommender", revision=second["recommender"])
    assert {"README.md", "metrics.json", "model.safetensors", "sid_map.json"} <= set(files)
    assert not hub.unknown_routes, hub.unknown_routes


def _card(hub: HubServer, repo_id: str, revision: str, repo_type: str = "model") -> tuple[dict, str]:
    text = hub.file(repo_id, "README.md", repo_type, revision).decode()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_cards_show_real_metrics_provenance_and_no_placeholders(hub, run_dir, pushed):
    shas = pushed["shas"]  # the cards of the CLI push (later tests push other versions)
    meta, body = _card(hub, f"{NAMESPACE}/tiny-run-recommender", shas["recommender"])
    for stage, label in (("grpo", "grpo (this model)"), ("sft", "sft")):
        metrics = json.loads((run_dir / "evaluation" / stage / "metrics.json").read_text())
        assert any(v["mean"] > 0 for v in metrics["summary"].values()), "all-zero metrics cannot show a real card"
        row = next(line for line in body.splitlines() if line.startswith(f"| {label} |"))
        expected = [f"{metrics['summary'][name]['mean']:.4f}" for name in ("HR@5", "NDCG@5", "HR@10", "NDCG@10")]
        assert row.split(" | ")[-4:] == [*expected[:3], expected[3] + " |"], row
        assert f"| {metrics['runs'][0]['users']} | 20 |" in row
    assert meta["license"] == "other" and meta["library_name"] == "transformers"
    assert meta["datasets"] == [f"{NAMESPACE}/tiny-run-items"]
    assert f'GenerativeRecommender.from_pretrained("{NAMESPACE}/tiny-run-recommender")' in body
    assert "2602.18907" in body and "2604.20861" in body and "McAuley" in body
    _, body_t = _card(hub, f"{NAMESPACE}/tiny-run-sid-tokenizer", shas["tokenizer"])
    report = json.loads((run_dir / "sid" / "tokenizer" / "sid_quality.json").read_text())
    assert f"{report['unique_fraction']:.1%}" in body_t and "trust_remote_code=True" in body_t
    assert "| collision suffix |" in body_t and "per-item suffix" not in body_t
    assert "trained with the catalogue softmax" in body  # the default
    meta_d, body_d = _card(hub, f"{NAMESPACE}/tiny-run-items", shas["dataset"], "dataset")
    assert [c["config_name"] for c in meta_d["configs"]] == ["items", "sequences"]
    assert "leave_last_out" in body_d and "beauty_2k" in body_d and "research use" in body_d
    lengths = Counter(len(sid) for sid in load_from_disk(str(run_dir / "sid" / "items"))["sid"])
    assert "; ".join(f"{k}: {n:,} items" for k, n in sorted(lengths.items())) in body_d  # codes per SID
    for text in (body, body_t, body_d):
        assert not re.search(r"\{\{|\{%|\bNone\b|\bnan\b|TODO|More Information Needed", text)


def test_push_refuses_a_recommender_without_metrics_and_bad_input_in_one_line(run_dir, tmp_path):
    runner = CliRunner()
    cases = [
        (["--run", str(tmp_path / "nowhere"), "--namespace", NAMESPACE], "no such run folder"),
        (["--run", str(run_dir), "--namespace", "bad namespace!"], "is not a valid Hub repo id"),
        (["--run", str(run_dir), "--namespace", NAMESPACE, "--name", "a" * 100], "at most 96"),
        (["--namespace", NAMESPACE], "give --config or --run"),
    ]
    unevaluated = tmp_path / "unevaluated"  # a run whose recommender was never evaluated
    unevaluated.mkdir()
    for stage in ("prepared", "sid", "sft"):  # no grpo: push_run takes the sft model, which has no metrics here
        (unevaluated / stage).symlink_to(run_dir / stage)
    cases.append((["--run", str(unevaluated), "--namespace", NAMESPACE], "--allow-missing-metrics"))
    for args, message in cases:
        result = runner.invoke(app, ["push", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with pytest.raises(HubError, match="'not a repo' is not a valid Hub repo id"):
        push_dataset(Dataset.from_dict({"item_id": ["a"]}), Dataset.from_dict({}), "not a repo")
    with pytest.raises(HubError, match=r"no evaluation metrics for this recommender.*allow_missing_metrics=True"):
        push_recommender(run_dir / "sft", f"{NAMESPACE}/unevaluated")


def test_cards_never_render_with_holes(tmp_path):
    (tmp_path / "dataset.md").write_text("---\n{{ card_data }}\n---\n# {{ name }}: {{ n_items }} items\n")
    (tmp_path / "tokenizer.md").write_text("---\n{{ card_data }}\n---\nliteral {{ '{{' }} n_items }}\n")
    card = render_card("dataset", DatasetCardData(license="mit"), {"name": "x", "n_items": 3}, tmp_path)
    assert card.text.strip() == "# x: 3 items" and card.data.license == "mit"
    with pytest.raises(HubError, match=r"dataset.md: 'n_items' is undefined"):
        render_card("dataset", DatasetCardData(), {"name": "x"}, tmp_path)
    with pytest.raises(HubError, match=r"tokenizer.md rendered with an unfilled value '\{\{' at line 1"):
        render_card("tokenizer", DatasetCardData(), {}, tmp_path)
    with pytest.raises(HubError, match="card templates not found"):
        render_card("dataset", DatasetCardData(), {}, tmp_path / "nowhere")


def test_a_refused_push_is_one_line_and_never_shows_the_token(hub, loaded):
    refused = json.loads((loaded / "refused.json").read_text())
    assert refused.startswith("pushing dataset someone-else/tiny-run-items failed (HTTP 403"), refused
    assert "namespace you own" in refused and "\n" not in refused
    assert ("dataset", "someone-else/tiny-run-items") not in hub.state.repos
    org = hub.commits("deepinterestgr-test/tiny-run-items", "dataset")[0]["id"]
    assert json.loads((loaded / "org.json").read_text()) == org
    assert hub.token not in refused + (loaded / "client.log").read_text()


def test_server_answers_the_real_clients_listing_and_byte_range_calls(hub, pushed):
    """What other huggingface_hub calls need: refs, branches, paths-info, expanded trees, HfFileSystem ranges."""
    api, repo, sha = _api(hub), f"{NAMESPACE}/tiny-run-items", pushed["shas"]["dataset"]
    api.create_branch(repo, repo_type="dataset", branch="frozen", revision=sha)
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert {b.name: b.target_commit for b in refs.branches}["frozen"] == sha
    info = {p.path: p for p in api.get_paths_info(repo, ["README.md", "items", "nope"], repo_type="dataset",
                                                   revision="frozen")}  # fmt: skip
    assert set(info) == {"README.md", "items"} and info["README.md"].lfs is None
    tree = list(api.list_repo_tree(repo, repo_type="dataset", revision=sha, recursive=True, expand=True))
    parquet = next(t for t in tree if t.path.startswith("items/") and t.path.endswith(".parquet"))
    assert parquet.lfs is not None and parquet.last_commit.oid == sha
    content = hub.file(repo, parquet.path, "dataset", sha)
    assert parquet.lfs.sha256 == hashlib.sha256(content).hexdigest() and parquet.size == len(content)
    fs = HfFileSystem(endpoint=hub.url, token=hub.token)
    with fs.open(f"datasets/{repo}/{parquet.path}", "rb", revision=sha, block_size=64) as handle:
        handle.seek(100)
        assert handle.read(50) == content[100:150]
        handle.seek(-8, 2)
        assert handle.read() == content[-8:]  # the parquet footer, as readers fetch it
    assert any(path.endswith("(Range)") for _, path in hub.requests)
    assert len(api.list_repo_commits(repo, repo_type="dataset", revision="frozen")) == 2
