"""How far two SID assignments of the same catalogue agree: normalized mutual information of their first K levels.

Why it is here: a change to what items are embedded from (for example mined descriptors added to the text) can
move the RQ-VAE's clusters, or not. Comparing the change against a reseed of the same RQ-VAE tells the two apart:
if the change moves the clusters no more than a new seed does, its effect on the SIDs is within their own noise.

Run: `.venv/bin/python benchmarks/sid_agreement.py A.json B.json [C.json ...] [--levels 1]` (saved `SemanticIDMap`
files, such as the per-seed caches `beauty_quality.py` writes under runs/beauty); every pair is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from deepinterestgr.sid import SemanticIDMap


def prefix_labels(sid_map: SemanticIDMap, item_ids: list[str], levels: int) -> np.ndarray:
    """One integer label per item: its first `levels` codes read as one number, in `item_ids` order."""
    row = {item: n for n, item in enumerate(sid_map.item_ids)}
    codes = np.asarray(sid_map.codes)[[row[i] for i in item_ids], :levels]
    return codes @ (sid_map.codebook_size ** np.arange(levels - 1, -1, -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maps", type=Path, nargs="+", help="two or more saved SemanticIDMap files")
    parser.add_argument("--levels", type=int, default=1, help="compare the first K levels (default: 1)")
    args = parser.parse_args()
    if len(args.maps) < 2:
        parser.error("give at least two SID files to compare")
    maps = {path: SemanticIDMap.load(path) for path in args.maps}
    items = sorted(maps[args.maps[0]].item_ids)
    for path, sid_map in maps.items():
        if sorted(sid_map.item_ids) != items:
            parser.error(f"{path} covers other items than {args.maps[0]}; compare SIDs of the same catalogue")
        if not 1 <= args.levels <= sid_map.num_levels:
            parser.error(f"--levels {args.levels}: {path} has {sid_map.num_levels} level(s)")
    labels = {path: prefix_labels(m, items, args.levels) for path, m in maps.items()}
    for a, b in itertools.combinations(args.maps, 2):
        nmi = normalized_mutual_info_score(labels[a], labels[b])
        print(json.dumps({"a": a.name, "b": b.name, "levels": args.levels, "nmi": round(float(nmi), 3)}))


if __name__ == "__main__":
    main()
