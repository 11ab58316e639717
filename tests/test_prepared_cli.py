"""The prepared folder round trip, the bundled sample, the CLI and the pipeline (as a user runs them)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepinterestgr.config import PipelineConfig
from deepinterestgr.data import PreparedData, load_sample, sample_path
from deepinterestgr.errors import ConfigError, DataError

CLI = [sys.executable, "-m", "deepinterestgr"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_bundled_sample_is_consistent():
    data = load_sample(max_history=50)
    stats = data.stats()
    assert (stats.users, stats.items, stats.interactions) == (2000, 7372, 18001)
    assert stats.min_length >= 5
    assert len(data.splits["test"]) == 2000
    assert (sample_path() / "README.md").is_file()


def test_save_load_round_trip(tmp_path):
    data = load_sample(max_history=5)
    data.save_to_disk(tmp_path / "prep")
    back = PreparedData.load_from_disk(tmp_path / "prep")
    assert back.items.to_list() == data.items.to_list()
    assert back.splits["valid"].to_list() == data.splits["valid"].to_list()
    assert max(len(h) for h in back.splits["test"]["history"]) == 5
    assert back.source["max_history"] == 5
    with pytest.raises(DataError, match="not a prepared dataset folder"):
        PreparedData.load_from_disk(tmp_path)


def test_cli_prepare_prints_stats_and_saves(tmp_path):
    result = run_cli("prepare", "--format", "p5", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "2,000" in result.stdout and "7,372" in result.stdout and "18,001" in result.stdout
    assert "coverage: brand" in result.stdout
    assert PreparedData.is_prepared(tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "p6"], "unknown format 'p6'"),
        (["--format", "p5", "--path", "/no/such/dir"], "/no/such/dir: no such folder"),
        (["--format", "lcrec", "--path", "."], "missing interaction file"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, args, message):
    result = run_cli("prepare", *args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


QUICK_STAGES = """
embed:
  collaborative_dim: 16
quantize:
  codebook_size: 32
  hidden_dims: [64]
  latent_dim: 16
  epochs: 4
  warmup_epochs: 1
sft:
  backbone: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  epochs: 1
grpo:
  rewards: [exact, valid, prefix, rank]
  group_size: 4
  prompts_per_step: 2
  max_prompts: 16
  epochs: 1
evaluate:
  max_users: 40
  num_beams: 10
"""


def forget_setting(folder: Path, key: str) -> None:
    """Drop `key` from a stage folder's recorded settings, as if the folder was made before that setting existed."""
    manifest = folder / "stage.json"
    made = json.loads(manifest.read_text())
    del made["config"][key]
    manifest.write_text(json.dumps(made))


def test_pipeline_runs_every_stage_then_resumes(tmp_path):
    from deepinterestgr.artifacts import load_items
    from deepinterestgr.sid import SemanticIDTokenizer

    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\ndata:\n  format: p5\n  max_history: 20\n{QUICK_STAGES}")
    first = run_cli("pipeline", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "7,372" in first.stdout and "unique at 3 levels" in first.stdout
    items = load_items(tmp_path / "run/sid", needs=("sid", "embedding"))
    tokenizer = SemanticIDTokenizer.from_pretrained(tmp_path / "run/sid/tokenizer")
    tokens = [tokenizer.tokens_of(i) for i in items["item_id"]]
    assert len(set(tokens)) == len(items)  # the suffix makes every item unique
    assert all(tokenizer.item_for_tokens(t) == i for t, i in zip(tokens, items["item_id"], strict=True))
    codes = tokenizer.encode(items["embedding"][:50])
    assert [list(c) for c in codes] == [s[:3] for s in items["sid"][:50]]
    forget_setting(tmp_path / "run/sid", "suffix")  # a sid/ folder made before `suffix` existed: collision, reused
    second = run_cli("pipeline", "--config", str(config))
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("done already") == 7 and "unique at 3 levels" in second.stdout
    for stage in ("sft", "grpo"):
        metrics = json.loads((tmp_path / f"run/evaluation/{stage}/metrics.json").read_text())
        assert metrics["runs"][0]["users"] == 40
        assert set(metrics["summary"]) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10"}
        assert f"| {stage}, test (40 users, beam 10) |" in second.stdout

    # a finished stage made with other settings is refused, naming the folder and what changed
    text = config.read_text()
    config.write_text(text.replace("  epochs: 1\ngrpo", "  epochs: 2\ngrpo"))
    changed = run_cli("pipeline", "--config", str(config))
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert f"sft: {tmp_path / 'run/sft'} was made with other settings (epochs: 1.0 -> 2.0)" in changed.stderr
    # an sft/ folder made before `sid_softmax` existed was trained with the full softmax: not the default any more
    config.write_text(text)
    forget_setting(tmp_path / "run/sft", "sid_softmax")
    legacy = run_cli("pipeline", "--config", str(config))
    assert legacy.returncode == 2 and "(sid_softmax: 'vocabulary' -> 'catalogue')" in legacy.stderr
    # a stage made before an earlier one re-ran is out of date: refused too
    shutil.rmtree(tmp_path / "run/sft")
    stale = run_cli("pipeline", "--config", str(config))
    assert stale.returncode == 2 and "sft: training the recommender" in stale.stdout
    assert f"grpo: {tmp_path / 'run/grpo'} was made before sft re-ran, so it is out of date" in stale.stderr


@pytest.mark.parametrize("sid_softmax", ["vocabulary", "catalogue"])
def test_sft_and_grpo_under_two_process_accelerate_launch(tmp_path, sid_softmax):
    from deepinterestgr.recommender.model import GenerativeRecommender

    config = tmp_path / "c.yaml"
    stages = QUICK_STAGES.replace("sft:\n", f"sft:\n  sid_softmax: {sid_softmax}\n")
    config.write_text(f"output_dir: {tmp_path / 'run'}\n{stages}")
    first = run_cli("pipeline", "--config", str(config))  # prepare .. evaluate, one process
    assert first.returncode == 0, first.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu"]
    for module, stage in (("deepinterestgr.recommender.sft", "sft"), ("deepinterestgr.rl.grpo", "grpo")):
        before = (tmp_path / f"run/{stage}/model.safetensors").stat().st_mtime_ns
        result = subprocess.run(
            [*launch, "-m", module, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / f"run/{stage}/model.safetensors").stat().st_mtime_ns > before  # written again
        recommender = GenerativeRecommender.from_pretrained(tmp_path / f"run/{stage}")
        assert recommender.sid_softmax == sid_softmax
        recs = recommender.recommend([recommender.sid_map.item_ids[:3]], k=5)
        assert len(recs[0]) == 5 and all(r.item_id in recommender.sid_map for r in recs[0])


def test_stage_commands_report_missing_inputs(tmp_path):
    prepared = tmp_path / "prep"
    assert run_cli("prepare", "--format", "p5", "--out", str(prepared)).returncode == 0
    result = run_cli("quantize", "--items", str(prepared), "--out", str(tmp_path / "sid"))
    assert result.returncode == 2 and "missing column(s) embedding; run the stage that adds them first" in result.stderr
    result = run_cli("quantize", "--items", str(prepared), "--out", str(tmp_path / "sid"), "--suffix", "every")
    assert result.returncode == 2 and "--suffix" in result.stderr and "'collision' or 'item'" in result.stderr
    result = run_cli("embed", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "e"))
    assert result.returncode == 2 and "not a prepared dataset folder" in result.stderr
    result = run_cli("embed", "--data", str(prepared), "--out", str(tmp_path / "e"), "--collaborative", "maybe")
    assert result.returncode == 2 and "--collaborative" in result.stderr and "Traceback" not in result.stderr


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  formt: p5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'data.formt': Extra inputs are not permitted"):
        PipelineConfig.from_yaml(bad)
    bad.write_text("data:\n  max_history: 0\n")
    with pytest.raises(ConfigError, match=r"field 'data.max_history'.*greater than or equal to 1"):
        PipelineConfig.from_yaml(bad)
    bad.write_text("sft:\n  hidden_dropout: 1.5\n")
    with pytest.raises(ConfigError, match=r"field 'sft'.*hidden_dropout must be in \[0, 1\), got 1.5"):
        PipelineConfig.from_yaml(bad)
    bad.write_text("grpo:\n  rewards: [exact, qram]\n")
    with pytest.raises(ConfigError, match=r"field 'grpo'.*unknown reward\(s\) qram"):
        PipelineConfig.from_yaml(bad)
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        PipelineConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        PipelineConfig.from_yaml(tmp_path / "missing.yaml")
    assert PipelineConfig.from_yaml(Path(__file__).parents[1] / "configs/quickstart.yaml").data.path is None
