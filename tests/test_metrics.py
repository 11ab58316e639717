import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepinterestgr.evaluation.metrics import evaluate_rankings, hit_rate_at_k, ndcg_at_k, target_ranks


def test_ranks_first_occurrence_absent_and_ragged():
    ranked = [["a", "b", "c"], ["x"], [], ["c", "a", "a"]]
    assert target_ranks(ranked, ["c", "y", "a", "a"]).tolist() == [2, -1, -1, 1]


def test_values_by_hand():
    # targets at ranks 0, 2, 6 and missing: computed by hand below
    ranked = [[1, 2, 3, 4, 5, 6, 7], [9, 8, 1, 2, 3, 4, 5], [9, 8, 7, 6, 5, 4, 1], [2, 3]]
    metrics = evaluate_rankings(ranked, [1, 1, 1, 1], ks=(1, 5, 10))
    assert metrics["HR@1"] == pytest.approx(1 / 4)
    assert metrics["HR@5"] == pytest.approx(2 / 4)
    assert metrics["HR@10"] == pytest.approx(3 / 4)
    assert metrics["NDCG@1"] == pytest.approx(1 / 4)
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert metrics["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)


def test_numpy_input_and_bad_arguments():
    ranks = target_ranks(np.array([[3, 1], [2, 0]]), [1, 5])
    assert ranks.tolist() == [1, -1]
    with pytest.raises(ValueError, match="2 ranked lists but 1 targets"):
        target_ranks([[1], [2]], [1])
    with pytest.raises(ValueError, match="K must be >= 1"):
        hit_rate_at_k(ranks, 0)


@given(st.lists(st.tuples(st.permutations(list(range(12))), st.integers(0, 14)), min_size=1, max_size=20))
def test_matches_a_plain_loop(cases):
    ranked = [list(p) for p, _ in cases]
    targets = [t for _, t in cases]
    ranks = target_ranks(ranked, targets)
    for k in (1, 5, 10):
        expected_hr = np.mean([t in r[:k] for r, t in zip(ranked, targets, strict=True)])
        expected_ndcg = np.mean(
            [1 / math.log2(r.index(t) + 2) if t in r[:k] else 0.0 for r, t in zip(ranked, targets, strict=True)]
        )
        assert hit_rate_at_k(ranks, k) == pytest.approx(expected_hr)
        assert ndcg_at_k(ranks, k) == pytest.approx(expected_ndcg)
