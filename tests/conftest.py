"""Shared fixtures: small source folders written in the real on-disk formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_lines(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def p5_dir(tmp_path: Path) -> Path:
    """Three users, four items, in P5 files (1-based indices, attributes with the brand first where known)."""
    folder = tmp_path / "p5"
    folder.mkdir()
    write_lines(folder / "sequential_data.txt", ["1 1 2 3", "2 2 3 4 1", "3 4 1 2"])
    maps = {
        "id2user": {"1": "U1", "2": "U2", "3": "U3"},
        "id2item": {"1": "A1", "2": "A2", "3": "A3", "4": "A4"},
    }
    (folder / "datamaps.json").write_text(json.dumps(maps))
    attrs = {
        "1": {"asin": "A1", "attributes": ["OPI", "Makeup", "Nails"]},
        "2": {"asin": "A2", "attributes": ["Makeup", "Face"]},
        "3": {"asin": "A3", "attributes": ["Unknown", "Skin Care", "Face"]},
        "4": {"asin": "A4", "attributes": ["Skin Care", "Body"]},
    }
    (folder / "item_attributes.json").write_text(json.dumps(attrs))
    return folder
