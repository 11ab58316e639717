"""SFT is bit-reproducible: the same arguments give the same weights in another process, whatever the global RNG
state on entry (a pipeline that ran earlier stages in the same process, or one resumed at SFT) and whatever the
hash seed (no set/dict order of strings leaks into the data or the vocabulary)."""

import os
import subprocess
import sys

from deepinterestgr.recommender.backbone import BackboneConfig, load_backbone

TINY = BackboneConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.1)

TRAIN = """
import hashlib, sys, tempfile

import numpy as np
import torch
from datasets import Dataset

from deepinterestgr.recommender.backbone import BackboneConfig
from deepinterestgr.recommender.sft import RecommenderSFTArguments, train_recommender
from deepinterestgr.sid import SemanticIDMap

pretrained, draws = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
sid_map = SemanticIDMap.from_codes([f"item{i}" for i in range(40)], rng.integers(0, 4, (40, 3)), codebook_size=4)
sequences = [[sid_map.item_ids[(s + k * int(rng.integers(1, 3))) % 40] for k in range(5)] for s in range(0, 40, 2)]
items = Dataset.from_dict({"item_id": sid_map.item_ids})
scratch = BackboneConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.1)
for name, backbone, lora in (("scratch", scratch, False), ("pretrained+lora", BackboneConfig(name=pretrained), True)):
    args = RecommenderSFTArguments(
        backbone=backbone, tasks={"sequence": 1.0, "next_item": 0.5}, epochs=1, batch_size=16, lora=lora, lora_r=4,
        save_steps=1000, seed=0,
    )
    torch.rand(draws)  # what earlier work in the same process may have drawn from the global RNG
    with tempfile.TemporaryDirectory() as out:
        state = train_recommender(sequences, items, sid_map, args, out).recommender.model.state_dict()
    digest = hashlib.sha256(b"".join(k.encode() + state[k].numpy().tobytes() for k in sorted(state)))
    print(name, digest.hexdigest())
"""


def train_in_subprocesses(pretrained: str, runs: list[tuple[int, int]]) -> list[list[str]]:
    """One process per (draws, hash seed), run side by side. One torch thread each: this pins RNG and ordering
    effects, and two OpenMP threads per process on a shared 2-core machine are 10x slower for tiny models."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN, pretrained, str(draws)],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for draws, hash_seed in runs
    ]
    digests = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        digests.append([line for line in stdout.splitlines() if line.startswith(("scratch ", "pretrained+lora "))])
    return digests


def test_sft_weights_are_identical_across_processes(tmp_path):
    model, tokenizer = load_backbone(TINY, seed=1)  # a "pretrained" folder: SID rows and LoRA are drawn at SFT
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    first, second = train_in_subprocesses(str(tmp_path), [(0, 1), (1000, 2)])
    assert len(first) == 2
    assert first == second
