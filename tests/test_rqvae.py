"""RQ-VAE tokenizer: tiny configs, round trips, registration in fresh processes, determinism, bad input."""

import json
import subprocess
import sys
from typing import get_args

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

import deepinterestgr  # noqa: F401  (registers the auto classes)
from deepinterestgr.errors import DataError
from deepinterestgr.sid import RQVAEConfig, RQVAEModel, RQVAETrainingArguments, train_rqvae

TINY = {"input_dim": 12, "hidden_dims": [16], "latent_dim": 4, "codebook_size": 8}
QUICK = {"epochs": 6, "warmup_epochs": 2, "batch_size": 64, "show_progress": False}


def clustered(n: int = 200, dim: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    return (centers[rng.integers(0, 10, n)] + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    return train_rqvae(clustered(), RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK))


def test_config_validation():
    with pytest.raises(ValueError, match="codebook_size must be an integer >= 2"):
        RQVAEConfig(codebook_size=1)
    with pytest.raises(ValueError, match="hidden_dims must be positive"):
        RQVAEConfig(hidden_dims=[0])
    with pytest.raises(ValueError, match="image_dim must be a positive integer or None"):
        RQVAEConfig(image_dim=-3)
    assert RQVAEConfig.from_dict(RQVAEConfig(**TINY).to_dict()).hidden_dims == [16]


def test_training_changes_parameters_and_seeds_codebooks():
    data = clustered()
    before = RQVAEModel(RQVAEConfig(**TINY)).state_dict()
    torch.manual_seed(0)
    result = train_rqvae(data, RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK))
    after = result.model.state_dict()
    assert not torch.equal(before["encoder.layers.0.weight"], after["encoder.layers.0.weight"])
    assert all(bool(level.initialized) for level in result.model.quantizer.levels)
    assert result.codes.shape == (200, 3) and result.codes.max() < 8
    assert len(result.history) == 6 and result.report["utilization"][0] > 0.5


def test_save_load_round_trip_is_bit_equal(trained, tmp_path):
    trained.model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_rqvae.RQVAEConfig",
        "AutoModel": "modeling_rqvae.RQVAEModel",
    }
    loaded = RQVAEModel.from_pretrained(tmp_path)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    x = torch.from_numpy(clustered(seed=1))
    assert torch.equal(trained.model.get_codes(x), loaded.get_codes(x))
    assert isinstance(AutoModel.from_pretrained(tmp_path), RQVAEModel)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), RQVAEConfig)


def _fresh(code: str, cwd) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_auto_loading_in_fresh_processes(trained, tmp_path):
    folder = tmp_path / "tok"
    trained.model.save_pretrained(folder)
    x = clustered(seed=2)
    np.save(tmp_path / "x.npy", x)
    expected = trained.model.get_codes(torch.from_numpy(x)).tolist()
    common = (
        "import json, sys, numpy as np, torch\n"
        "from transformers import AutoModel\n"
        "x = torch.from_numpy(np.load('x.npy'))\n"
    )
    with_package = _fresh(
        "import deepinterestgr\n" + common + "m = AutoModel.from_pretrained('tok')\n"
        "print(json.dumps([type(m).__module__, m.get_codes(x).tolist()]))",
        tmp_path,
    )
    module, codes = json.loads(with_package)
    assert module == "deepinterestgr.sid.modeling_rqvae" and codes == expected
    remote = _fresh(
        common + "m = AutoModel.from_pretrained('tok', trust_remote_code=True)\n"
        "assert not any(k.startswith('deepinterestgr') for k in sys.modules), 'package was imported'\n"
        "print(json.dumps(m.get_codes(x).tolist()))",
        tmp_path,
    )
    assert json.loads(remote) == expected


def test_codes_are_deterministic_under_a_seed():
    data = clustered()
    first = train_rqvae(data, RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK, seed=7)).codes
    second = train_rqvae(data, RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK, seed=7)).codes
    other = train_rqvae(data, RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK, seed=8)).codes
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_backward_has_no_thread_order_dependent_gather(trained):
    """Indexing a codebook (`embed[index]`) back-propagates with an index_put whose sum over repeated codes
    follows CPU thread order: codes then differ between runs with 2+ threads. The lookup must be an embedding."""
    out = trained.model(torch.from_numpy(clustered(32)))
    seen, stack = set(), [out.loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert "EmbeddingBackward0" in names and "IndexBackward0" not in names


def test_resume_continues_from_the_checkpoint(tmp_path):
    data = clustered()
    args = {**QUICK, "checkpoint_every": 2}
    first = train_rqvae(data, RQVAEConfig(**TINY), RQVAETrainingArguments(**args), checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / "trainer_state.json").read_text())["epoch"] == 6
    resumed = train_rqvae(
        data, RQVAEConfig(**TINY), RQVAETrainingArguments(**{**args, "epochs": 8}), checkpoint_dir=tmp_path
    )
    assert len(resumed.history) == 8
    assert resumed.history[:6] == first.history  # the first six epochs were not re-run


def test_dead_codes_are_restarted():
    model = train_rqvae(clustered(), RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK)).model
    before = model.quantizer.levels[0].embed.detach().clone()
    for level in model.quantizer.levels:
        level.usage.zero_()
        level.usage[0] = 5.0  # code 0 alive, the other seven dead
    restarted = model.restart_dead_codes(
        torch.from_numpy(clustered(seed=3)), generator=torch.Generator().manual_seed(0)
    )
    assert restarted == [7, 7, 7]
    after = model.quantizer.levels[0].embed.detach()
    assert torch.equal(before[0], after[0]) and not torch.equal(before[1:], after[1:])
    assert float(model.quantizer.levels[0].usage.sum()) == 0.0


def test_cmsa_fusion_and_aux_target_train():
    rng = np.random.default_rng(0)
    text, image, aux = clustered(), rng.normal(size=(200, 5)).astype(np.float32), rng.normal(size=(200, 3))
    config = RQVAEConfig(**TINY, image_dim=5, aux_dim=3)
    initial = RQVAEModel(config)
    assert torch.equal(initial.fusion.fusion.weight[:, :12], torch.eye(12))  # starts as text-only
    result = train_rqvae(text, config, RQVAETrainingArguments(**QUICK), image_embeddings=image, aux_targets=aux)
    model = result.model
    assert not torch.equal(model.fusion.fusion.weight[:, 12:], torch.zeros(12, 12))  # learned to use the image
    out = model(torch.from_numpy(text[:4]), torch.from_numpy(image[:4]), torch.from_numpy(aux[:4]).float())
    assert out.aux_loss is not None and out.reconstruction.shape == (4, 17)
    with pytest.raises(ValueError, match="pass image_embeddings"):
        model.get_codes(torch.from_numpy(text[:4]))


def test_bad_inputs_have_clear_errors():
    data = clustered()
    with pytest.raises(DataError, match=r"dimension 12 but RQVAEConfig\.input_dim is 7"):
        train_rqvae(data, RQVAEConfig(**{**TINY, "input_dim": 7}), RQVAETrainingArguments(**QUICK))
    bad = data.copy()
    bad[5, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf in rows \[5\]"):
        train_rqvae(bad, RQVAEConfig(**TINY), RQVAETrainingArguments(**QUICK))
    with pytest.raises(DataError, match="k-means needs at least codebook_size=8 items, got 5"):
        train_rqvae(data[:5], RQVAEConfig(**TINY), RQVAETrainingArguments(**{**QUICK, "batch_size": 2}))
    model = RQVAEModel(RQVAEConfig(**TINY))
    with pytest.raises(ValueError, match=r"shape \(2, 5\) but the config expects \(batch, 12\)"):
        model.get_codes(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="NaN or inf in 1 row"):
        model.get_codes(torch.tensor([[float("inf")] * 12]))
    with pytest.raises(ValueError, match="warmup_epochs must be in"):
        RQVAETrainingArguments(epochs=3, warmup_epochs=3)


def test_quantize_stage_with_per_item_suffixes():
    from datasets import Dataset

    from deepinterestgr.config import QuantizeConfig
    from deepinterestgr.sid.quantize import quantize_items
    from deepinterestgr.sid.semantic_ids import SUFFIX_KINDS

    x = clustered(60)
    items = Dataset.from_dict({"item_id": [f"i{n}" for n in range(60)], "embedding": x.tolist()})
    out, tokenizer = quantize_items(
        items, config=RQVAEConfig(**TINY), args=RQVAETrainingArguments(**QUICK), suffix="item"
    )
    assert tokenizer.sid_map.per_item_suffix and tokenizer.report["suffix"] == "item"
    assert [sid[-1] for sid in out["sid"]] == list(range(60)) and {len(sid) for sid in out["sid"]} == {4}
    with pytest.raises(ValueError, match="suffix"):
        QuantizeConfig(suffix="every")
    assert get_args(QuantizeConfig.model_fields["suffix"].annotation) == SUFFIX_KINDS  # the torch-free twin agrees
