"""Every GRPO reward on hand-built cases, with exact expected values."""

import math

import numpy as np
import pytest
from datasets import Dataset

from deepinterestgr.errors import DataError
from deepinterestgr.mining.quality import item_quality, quality_column
from deepinterestgr.rl.rewards import (
    ExactMatchReward,
    InterestReward,
    PrefixReward,
    QualityBonusReward,
    RankReward,
    ValidityReward,
    parse_sid,
)
from deepinterestgr.sid import SemanticIDMap

# x and y collide on (1, 2, 3): they get suffixes 0 and 1; z and w are unique.
SID_MAP = SemanticIDMap.from_codes(
    ["x", "y", "z", "w"], np.array([[1, 2, 3], [1, 2, 3], [1, 2, 4], [5, 6, 7]]), codebook_size=8
)
X, Y, Z, W = "<a_1><b_2><c_3><d_0>", "<a_1><b_2><c_3><d_1>", "<a_1><b_2><c_4>", "<a_5><b_6><c_7>"
QUALITY = {"x": 0.8, "y": 0.2, "z": 1.0, "w": 0.0}


def test_parse_sid_reads_codes_and_items_ignoring_spaces():
    assert parse_sid("<a_1> <b_2> <c_4>", SID_MAP).item == "z"
    assert parse_sid("<a_1><b_2><c_3>", SID_MAP).item is None  # needs its suffix
    assert parse_sid("<a_1><c_2>", SID_MAP).codes == (1,)  # wrong level letter stops the codes
    assert parse_sid("hello", SID_MAP) == parse_sid("", SID_MAP)


def test_exact_valid_prefix():
    completions = [X, Y, Z, W, "<a_1><b_2>", "garbage"]
    target = ["x"] * 6
    assert ExactMatchReward(SID_MAP)([""] * 6, completions, target=target) == [1, 0, 0, 0, 0, 0]
    assert ValidityReward(SID_MAP)([""] * 6, completions) == [1, 1, 1, 1, 0, 0]
    # suffix excluded: y shares all 3 codes with x, so its prefix reward is full although it is a different item
    assert PrefixReward(SID_MAP)([""] * 6, completions, target=target) == [1, 1, 2 / 3, 0, 2 / 3, 0]


def test_rank_reward_penalises_confident_mistakes():
    reward = RankReward(SID_MAP, group_size=4)
    norm = 1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    values = reward([""] * 4, [Z, X, W, "bad"], target=["x"] * 4, rollout_rank=[0, 1, 2, 3])
    assert values == pytest.approx([-1 / norm, 0.0, -(1 / math.log2(4)) / norm, 0.0])


def test_quality_bonus_gated_vs_ungated():
    completions, target = [X, Y, Z, "bad"], ["x", "x", "w", "z"]
    gated = QualityBonusReward(SID_MAP, QUALITY, alpha=0.5)
    ungated = QualityBonusReward(SID_MAP, QUALITY, alpha=0.5, gated=False)
    assert gated.__name__ == "qarm_bonus" and ungated.__name__ == "ungated_bonus"
    assert gated([""] * 4, completions, target=target) == [0.4, 0.0, 0.0, 0.0]  # y: right codes, wrong item
    assert gated([""], [Z], target=["z"]) == [0.5]
    assert ungated([""] * 4, completions, target=target) == [0.4, 0.1, 0.5, 0.0]  # paid whatever the match


def test_item_quality_weights_by_confidence():
    assert item_quality([1, 0, 1], [0.9, 0.5, 0.1]) == pytest.approx((0.9 + 0.1) / 1.5)
    assert item_quality([1, 0, 1, 1]) == 0.75  # no confidences: every descriptor weighs 1
    assert item_quality([]) == 0.0
    with pytest.raises(DataError, match="outside"):
        item_quality([1], [1.2], item="x")
    with pytest.raises(DataError, match="must be 0 or 1"):
        item_quality([2])
    items = Dataset.from_dict(
        {"item_id": ["a", "b"], "descriptor_labels": [[1, 0], [1]], "descriptor_confidences": [[0.5, 0.5], []]}
    )
    with pytest.raises(DataError, match=r"missing for some items \(first: 'b'\)"):
        quality_column(items)
    ok = Dataset.from_dict({"item_id": ["a", "b"], "descriptor_labels": [[1, 0], []]})
    assert quality_column(ok) == [0.5, 0.0]


def test_interest_reward_counts_only_positive_descriptors():
    descriptors = {"x": ["hydrating night cream", "gift idea"], "z": ["gift idea"]}
    labels = {"x": [1, 0], "z": [0]}
    reward = InterestReward(SID_MAP, descriptors, labels)
    values = reward([""] * 3, [X, Z, "bad"], interests=[["night cream"], ["gift idea"], ["night cream"]])
    # x: Jaccard({night, cream}, {hydrating, night, cream}) = 2/3; z's only descriptor is judged 0; invalid: 0
    assert values == pytest.approx([2 / 3, 0.0, 0.0])


def test_bad_input_is_named():
    with pytest.raises(DataError, match=r"needs the column\(s\) target"):
        ExactMatchReward(SID_MAP)([""], [X])
    with pytest.raises(DataError, match="target item 'nope' is not in the semantic-ID map"):
        ExactMatchReward(SID_MAP)([""], [X], target=["nope"])
    with pytest.raises(DataError, match=r"quality 1.5 is outside \[0, 1\]"):
        QualityBonusReward(SID_MAP, {**QUALITY, "w": 1.5})
    with pytest.raises(DataError, match="has no quality"):
        QualityBonusReward(SID_MAP, {"x": 0.1})
    with pytest.raises(DataError, match="is nan for completion 0"):
        QualityBonusReward(SID_MAP, QUALITY, alpha=float("nan"))([""], [X], target=["x"])
    with pytest.raises(DataError, match="2 descriptors but 1 labels"):
        InterestReward(SID_MAP, {"x": ["a", "b"]}, {"x": [1]})
