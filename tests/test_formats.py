"""Each loader on small files written in its real format, plus every bad-input case."""

import json
from pathlib import Path

import pytest

from deepinterestgr.data import load_format, prepare
from deepinterestgr.data.formats.minionerec import stitch
from deepinterestgr.data.formats.p5 import split_brand_categories
from deepinterestgr.errors import DataError
from tests.conftest import write_lines


def test_p5_ids_text_and_brand_split(p5_dir):
    items, seqs = load_format("p5", p5_dir)
    assert seqs["user_id"] == ["U1", "U2", "U3"]
    assert seqs["item_ids"][1] == ["A2", "A3", "A4", "A1"]
    rows = {r["item_id"]: r for r in items}
    assert rows["A1"]["brand"] == "OPI" and rows["A1"]["categories"] == ["Makeup", "Nails"]
    assert rows["A2"]["brand"] is None and rows["A2"]["categories"] == ["Makeup", "Face"]
    assert rows["A3"]["brand"] is None and rows["A3"]["categories"] == ["Skin Care", "Face"]  # "Unknown" brand
    assert rows["A1"]["title"] is None


def test_brand_split_learns_roots_from_positions():
    lists = [["Scissors", "Hair Care", "Tools", "Scissors"], ["Hair Care", "Tools", "Scissors"], ["Acme", "Hair Care"]]
    assert split_brand_categories(lists) == [
        ("Scissors", ["Hair Care", "Tools", "Scissors"]),
        (None, ["Hair Care", "Tools", "Scissors"]),
        ("Acme", ["Hair Care"]),
    ]


def test_p5_with_raw_meta_adds_titles(p5_dir):
    meta = [repr({"asin": "A2", "title": "Face powder", "description": "Soft.", "imUrl": "http://x/a2.jpg"})]
    write_lines(p5_dir / "meta_Beauty.json.gz", meta, gz=True)
    items, _ = load_format("p5", p5_dir)
    row = next(r for r in items if r["item_id"] == "A2")
    assert (row["title"], row["description"], row["image"]) == ("Face powder", "Soft.", "http://x/a2.jpg")
    assert row["categories"] == ["Makeup", "Face"]  # kept from the attributes where meta has none


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 2 x 4", r"sequential_data.txt:2: 'x' is not an integer index"),
        ("2 2 9 4", r"sequential_data.txt:2: item index 9 has no entry in datamaps.json id2item"),
        ("7 1 2 3", r"sequential_data.txt:2: user index 7 has no entry in datamaps.json id2user"),
        ("2", r"sequential_data.txt:2: user 2 has no items"),
    ],
)
def test_p5_bad_lines_name_file_and_line(p5_dir, line, message):
    write_lines(p5_dir / "sequential_data.txt", ["1 1 2 3", line, "3 4 1 2"])
    with pytest.raises(DataError, match=message):
        load_format("p5", p5_dir)


def test_missing_folder_file_and_unknown_format(tmp_path, p5_dir):
    with pytest.raises(DataError, match="no such folder"):
        load_format("p5", tmp_path / "nope")
    (p5_dir / "datamaps.json").unlink()
    with pytest.raises(DataError, match=r"missing id map file \(looked for datamaps.json\)"):
        load_format("p5", p5_dir)
    with pytest.raises(DataError, match="unknown format 'p6'; use one of: p5, lcrec"):
        load_format("p6", p5_dir)
    (p5_dir / "datamaps.json").write_text("{not json")
    with pytest.raises(DataError, match=r"datamaps.json:1: invalid JSON"):
        load_format("p5", p5_dir)


def test_lcrec(tmp_path):
    (tmp_path / "Toys.item.json").write_text(
        json.dumps({"0": {"title": "Ball", "description": "Red ball"}, "1": {"title": "Kite"}, "2": {"title": "Car"}})
    )
    (tmp_path / "Toys.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 1, 0, 1]}))
    data = prepare("lcrec", tmp_path)
    assert data.sequences["item_ids"] == [["0", "1", "2"], ["2", "1", "0", "1"]]
    assert data.items[0]["description"] == "Red ball"
    assert data.splits["test"][1] == {"user_id": "1", "history": ["2", "1", "0"], "target": "1"}
    (tmp_path / "Toys.inter.json").write_text(json.dumps({"0": [0, 7]}))
    with pytest.raises(DataError, match=r"Toys.inter.json: user '0' has item '7' that has no row in Toys.item.json"):
        load_format("lcrec", tmp_path)


def test_minionerec_stitches_rows(tmp_path):
    items = {
        str(i): {"title": f"item {i}", "description": "['a', 'b']", "brand": "B", "categories": ""} for i in range(6)
    }
    (tmp_path / "Tools.item.json").write_text(json.dumps(items))
    header = "user_id,history_item_title,item_title,history_item_id,item_id"
    write_lines(tmp_path / "valid_Tools.csv", [header, 'A1,[],t,"[0, 1]",2', 'A1,[],t,"[0, 1, 2]",3'])
    write_lines(tmp_path / "test_Tools.csv", [header, 'A1,[],t,"[1, 2, 3]",4', 'A2,[],t,"[5]",0'])
    loaded_items, seqs = load_format("minionerec", tmp_path)
    assert dict(zip(seqs["user_id"], seqs["item_ids"], strict=True)) == {
        "A1": ["0", "1", "2", "3", "4"],
        "A2": ["5", "0"],
    }
    assert loaded_items[0]["description"] == "a b" and loaded_items[0]["categories"] == []
    write_lines(tmp_path / "test_Tools.csv", [header, 'A1,[],t,"[1, 2, 3]",9'])
    with pytest.raises(DataError, match=r"test_Tools.csv:2: item '9' has no row in Tools.item.json"):
        load_format("minionerec", tmp_path)
    write_lines(tmp_path / "test_Tools.csv", [header, "A1,[],t,oops,1"])
    with pytest.raises(DataError, match=r"test_Tools.csv:2: history_item_id 'oops' is not a list"):
        load_format("minionerec", tmp_path)


def test_stitch_overlap():
    assert stitch([], ["a", "b"], "c") == ["a", "b", "c"]
    assert stitch(["a", "b", "c"], ["b", "c"], "d") == ["a", "b", "c", "d"]
    assert stitch(["a", "b"], ["x"], "y") == ["a", "b", "x", "y"]  # a gap: history not seen before


@pytest.mark.shared_data
@pytest.mark.skipif(not (Path(__file__).parents[2] / "shared/data/amazon").is_dir(), reason="needs ../shared/data")
def test_real_minionerec_industrial_has_all_titles():
    items, _ = load_format("minionerec", Path(__file__).parents[2] / "shared/data/amazon/industrial_and_scientific")
    assert len(items) == 3686
    assert all(items["title"])


@pytest.mark.shared_data
@pytest.mark.skipif(not (Path(__file__).parents[2] / "shared/data/amazon").is_dir(), reason="needs ../shared/data")
def test_real_beauty_p5_counts():
    data = prepare("p5", Path(__file__).parents[2] / "shared/data/amazon/beauty")
    stats = data.stats()
    assert (stats.users, stats.items, stats.interactions) == (22363, 12101, 198502)
    assert len(data.splits["test"]) == 22363
