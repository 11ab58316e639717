"""Raw Amazon dumps, written by the test as gz/plain files in the real field layouts of 2014, 2018 and 2023."""

import json

import pytest

from deepinterestgr.data import prepare
from deepinterestgr.data.formats import load_format
from deepinterestgr.errors import DataError
from tests.conftest import write_lines

# (user, item, time): u1..u3 each review items a, b, c at shuffled times; "sparse" user and item "z" are
# removed by 2-core filtering (z has one review; then "sparse" has one left).
EVENTS = [
    ("u1", "b", 200),
    ("u1", "a", 100),
    ("u1", "c", 300),
    ("u2", "c", 50),
    ("u2", "a", 60),
    ("u2", "b", 60),
    ("u3", "a", 10),
    ("u3", "c", 30),
    ("u3", "b", 20),
    ("sparse", "a", 5),
    ("sparse", "z", 6),
]


def _write_2014(folder):
    reviews = [json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 5.0}) for u, i, t in EVENTS]
    write_lines(folder / "reviews_Beauty_5.json.gz", reviews, gz=True)
    meta = [
        repr(
            {
                "asin": "a",
                "title": "Lipstick",
                "categories": [["Beauty", "Makeup"], ["Beauty", "Lips"]],
                "brand": "Acme",
                "imUrl": "http://img/a.jpg",
                "description": "Red.",
            }
        ),
        repr({"asin": "b", "title": "Shampoo", "categories": [["Beauty", "Hair Care"]]}),
        repr({"asin": "z", "title": "Gone"}),
    ]
    write_lines(folder / "meta_Beauty.json.gz", meta, gz=True)


def test_amazon2014_kcore_order_and_fields(tmp_path):
    _write_2014(tmp_path)
    data = prepare("amazon2014", tmp_path, k_core=2)
    seqs = dict(zip(data.sequences["user_id"], data.sequences["item_ids"], strict=True))
    assert seqs == {"u1": ["a", "b", "c"], "u2": ["c", "a", "b"], "u3": ["a", "b", "c"]}  # u2: a, b tie -> file order
    assert data.sequences["timestamps"][0] == [100, 200, 300]
    rows = {r["item_id"]: r for r in data.items}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["categories"] == ["Beauty", "Makeup", "Lips"]
    assert (rows["a"]["brand"], rows["a"]["image"], rows["a"]["description"]) == ("Acme", "http://img/a.jpg", "Red.")
    assert rows["c"]["title"] is None  # reviewed but no meta line: kept, without text


def test_amazon2018_jsonl_gz_with_duplicates(tmp_path):
    reviews = [json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 4}) for u, i, t in EVENTS]
    write_lines(tmp_path / "Industrial_5.json.gz", [*reviews, reviews[0]], gz=True)  # a duplicated line
    meta = [
        json.dumps(
            {
                "asin": "a",
                "title": "Drill",
                "category": ["Tools", "Power"],
                "description": ["Fast", "Cordless"],
                "imageURLHighRes": ["http://img/a-hi.jpg"],
                "brand": "Bosch",
            }
        )
    ]
    write_lines(tmp_path / "meta_Industrial.json.gz", meta, gz=True)
    items, seqs = load_format("amazon2018", tmp_path, k_core=2)
    assert sum(len(s) for s in seqs["item_ids"]) == 9
    row = next(r for r in items if r["item_id"] == "a")
    assert (row["description"], row["image"], row["categories"]) == (
        "Fast Cordless",
        "http://img/a-hi.jpg",
        ["Tools", "Power"],
    )


def test_amazon2023_plain_jsonl(tmp_path):
    reviews = [
        json.dumps({"user_id": u, "parent_asin": i, "asin": i + "-v", "timestamp": t * 1000, "rating": 5})
        for u, i, t in EVENTS
    ]
    write_lines(tmp_path / "All_Beauty.jsonl", reviews)
    meta = [
        json.dumps(
            {
                "parent_asin": "b",
                "title": "Gel",
                "categories": [],
                "store": "GelCo",
                "images": [{"thumb": "t.jpg", "large": "l.jpg", "hi_res": None}],
                "description": [],
            }
        )
    ]
    write_lines(tmp_path / "meta_All_Beauty.jsonl", meta)
    items, seqs = load_format("amazon2023", tmp_path, k_core=2)
    assert seqs["timestamps"][0] == [100, 200, 300]  # milliseconds -> seconds
    row = next(r for r in items if r["item_id"] == "b")
    assert (row["brand"], row["image"], row["description"]) == ("GelCo", "l.jpg", None)


def test_raw_bad_inputs(tmp_path):
    _write_2014(tmp_path)
    bad = [json.dumps({"reviewerID": "u1", "asin": "a", "unixReviewTime": 1}), "{broken"]
    write_lines(tmp_path / "reviews_Beauty_5.json.gz", bad, gz=True)
    with pytest.raises(DataError, match=r"reviews_Beauty_5.json.gz:2: not a JSON object or Python dict literal"):
        load_format("amazon2014", tmp_path)
    write_lines(tmp_path / "reviews_Beauty_5.json.gz", [json.dumps({"asin": "a", "unixReviewTime": 1})], gz=True)
    with pytest.raises(DataError, match=r":1: no user field \(expected one of user_id, reviewerID\)"):
        load_format("amazon2014", tmp_path)
    write_lines(
        tmp_path / "reviews_Beauty_5.json.gz",
        [json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1})],
        gz=True,
    )
    with pytest.raises(DataError, match="no interactions survive 5-core filtering; lower --k-core"):
        load_format("amazon2014", tmp_path)
    (tmp_path / "meta_Beauty.json.gz").unlink()
    with pytest.raises(DataError, match="missing meta file"):
        load_format("amazon2014", tmp_path)
    (tmp_path / "reviews_Beauty_5.json.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    write_lines(tmp_path / "meta_Beauty.json.gz", ["{}"], gz=True)
    with pytest.raises(DataError, match="truncated or corrupt gzip file"):
        load_format("amazon2014", tmp_path)
