from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepinterestgr.data.kcore import k_core
from deepinterestgr.data.schema import build_sequences
from deepinterestgr.data.splits import leave_last_out


def test_leave_last_out_and_max_history():
    seqs = build_sequences(["u1", "u2", "short"], [list("abcdef"), list("xyz"), list("pq")])
    splits = leave_last_out(seqs, max_history=2)
    assert splits["train"]["item_ids"] == [list("abcd"), ["x"]]
    assert splits["valid"][0] == {"user_id": "u1", "history": ["c", "d"], "target": "e"}
    assert splits["test"][0] == {"user_id": "u1", "history": ["d", "e"], "target": "f"}
    assert splits["test"][1] == {"user_id": "u2", "history": ["x", "y"], "target": "z"}
    assert splits["test"]["user_id"] == ["u1", "u2"]  # too short to split: left out


@given(st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=3, max_size=15), min_size=1, max_size=10))
def test_splits_rebuild_the_sequence(sequences):
    seqs = build_sequences([f"u{i}" for i in range(len(sequences))], sequences)
    splits = leave_last_out(seqs)
    for seq, train, valid, test in zip(sequences, splits["train"], splits["valid"], splits["test"], strict=True):
        assert [*train["item_ids"], valid["target"], test["target"]] == seq
        assert test["history"] == seq[:-1]


def test_k_core_needs_more_than_one_pass():
    # d has 1 interaction -> dropped; then u3 has 1 -> dropped; then c has 1 -> dropped; then u2 has 1 -> dropped.
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "c"), ("u3", "d"), ("u4", "a"), ("u4", "b")]
    pairs = [*pairs, ("u1", "a"), ("u4", "b")]
    keep = k_core(pairs, 2)
    kept = [p for p, k in zip(pairs, keep, strict=True) if k]
    assert {u for u, _ in kept} == {"u1", "u4"}
    assert min(Counter(u for u, _ in kept).values()) >= 2
    assert min(Counter(i for _, i in kept).values()) >= 2
    with pytest.raises(ValueError, match=">= 1"):
        k_core(pairs, 0)
