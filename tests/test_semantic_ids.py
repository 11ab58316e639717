import numpy as np
import pytest

from deepinterestgr.errors import DataError
from deepinterestgr.sid import SemanticIDMap, SemanticIDTokenizer, sid_quality

CODES = np.array([[1, 2, 3], [1, 2, 3], [4, 5, 6], [1, 2, 3], [1, 2, 7]])
ITEMS = ["i0", "i1", "i2", "i3", "i4"]


def test_suffix_only_for_colliding_items_and_everything_unique():
    sid_map = SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8)
    assert sid_map.suffix.tolist() == [0, 1, -1, 2, -1]
    assert sid_map.suffix_size == 3
    assert [sid_map.tokens_of(i) for i in ITEMS] == [
        "<a_1><b_2><c_3><d_0>",
        "<a_1><b_2><c_3><d_1>",
        "<a_4><b_5><c_6>",
        "<a_1><b_2><c_3><d_2>",
        "<a_1><b_2><c_7>",
    ]
    assert len({sid_map.tokens_of(i) for i in ITEMS}) == len(ITEMS)
    for item in ITEMS:
        assert sid_map.item_for_tokens(sid_map.tokens_of(item)) == item
        assert sid_map.item_for_codes(sid_map.codes_of(item)) == item


def test_lookups_that_fail():
    sid_map = SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8)
    assert sid_map.item_for_tokens("<a_1><b_2><c_3>") is None  # a colliding tuple needs its suffix
    assert sid_map.item_for_tokens("<a_4><b_5>") is None
    assert sid_map.item_for_tokens("<b_5><a_4><c_6>") is None
    assert sid_map.item_for_tokens("<a_4> <b_5><c_6>") is None
    assert sid_map.item_for_tokens(" <a_4><b_5><c_6>\n") == "i2"
    with pytest.raises(KeyError, match="'nope' is not in the semantic-ID map"):
        sid_map.tokens_of("nope")


def test_vocabulary_tensor_and_save_load(tmp_path):
    sid_map = SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8)
    vocab = sid_map.vocabulary()
    assert len(vocab) == 3 * 8 + 3 and vocab[0] == "<a_0>" and vocab[-1] == "<d_2>"
    assert sid_map.as_tensor().tolist()[0] == [1, 2, 3, 0] and sid_map.as_tensor().tolist()[2] == [4, 5, 6, -1]
    back = SemanticIDMap.load(sid_map.save(tmp_path / "m.json"))
    assert back.item_ids == ITEMS and np.array_equal(back.codes, CODES) and np.array_equal(back.suffix, sid_map.suffix)
    (tmp_path / "bad.json").write_text('{"item_ids": ["a"]}')
    with pytest.raises(DataError, match="not a valid semantic-ID map"):
        SemanticIDMap.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no semantic-ID map here"):
        SemanticIDMap.load(tmp_path / "missing.json")


def test_map_must_match_the_model():
    from deepinterestgr.sid import RQVAEConfig, RQVAEModel

    model = RQVAEModel(RQVAEConfig(input_dim=4, hidden_dims=[8], latent_dim=2, codebook_size=16))
    sid_map = SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8)
    with pytest.raises(DataError, match="3 levels of 8 codes but the model has 3 of 16"):
        SemanticIDTokenizer(model, sid_map)


def test_quality_report_by_hand():
    report = sid_quality(CODES, codebook_size=8)
    assert report["unique_fraction"] == pytest.approx(2 / 5)
    assert report["max_items_per_tuple"] == 3
    assert report["unique_fraction_by_prefix"] == pytest.approx([1 / 5, 1 / 5, 2 / 5])
    assert report["utilization"] == pytest.approx([2 / 8, 2 / 8, 3 / 8])
    p = np.array([4, 1]) / 5
    assert report["perplexity"][0] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_per_item_suffix_gives_every_item_its_own_last_code(tmp_path):
    sid_map = SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8, suffix="item")
    assert sid_map.suffix.tolist() == [0, 1, 2, 3, 4] and sid_map.per_item_suffix
    assert sid_map.tokens_of("i2") == "<a_4><b_5><c_6><d_2>"
    assert len(sid_map.vocabulary()) == 3 * 8 + len(ITEMS)
    assert sid_map.item_for_tokens("<a_4><b_5><c_6>") is None  # every SID now ends in its item's suffix
    back = SemanticIDMap.load(sid_map.save(tmp_path / "m.json"))
    assert back.per_item_suffix and [back.tokens_of(i) for i in ITEMS] == [sid_map.tokens_of(i) for i in ITEMS]
    assert not SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8).per_item_suffix
    with pytest.raises(DataError, match="suffix='items' is not one of"):
        SemanticIDMap.from_codes(ITEMS, CODES, codebook_size=8, suffix="items")
