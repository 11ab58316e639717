"""Cut a small, re-indexed P5-format slice of a P5 folder (how the bundled sample was made).

Run: `python -m deepinterestgr.data.sample SOURCE_DIR OUT_DIR --users 2000 --seed 42`. Users are drawn uniformly
at random (seeded) and keep their whole sequence; every item they touched is kept; users and items are re-indexed
1..N in order of first appearance. Only `sequential_data.txt`, the id tables of `datamaps.json` and
`item_attributes.json` are written.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from deepinterestgr.data.formats._io import find_file, read_json, require_dir


def cut_p5_sample(source: str | Path, out: str | Path, *, users: int = 2000, seed: int = 42) -> Path:
    """Write a `users`-user slice of the P5 folder `source` to `out`."""
    source, out = require_dir(source, fmt="P5"), Path(out)
    lines = [line.split() for line in (source / "sequential_data.txt").read_text().splitlines() if line.strip()]
    datamaps = read_json(source / "datamaps.json")
    attr_path = find_file(source, ("item_attributes.json",), what="item attribute", required=False)
    attributes = read_json(attr_path) if attr_path else {}
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(users, len(lines))))

    item_index: dict[str, int] = {}
    new_lines, id2user, id2item, new_attributes = [], {}, {}, {}
    for new_user, row in enumerate((lines[c] for c in chosen), start=1):
        id2user[str(new_user)] = datamaps["id2user"][row[0]]
        for old in row[1:]:
            if old not in item_index:
                new = item_index[old] = len(item_index) + 1
                id2item[str(new)] = datamaps["id2item"][old]
                if old in attributes:
                    new_attributes[str(new)] = {
                        "asin": attributes[old].get("asin"),
                        "attributes": attributes[old].get("attributes", []),
                    }
        new_lines.append(" ".join([str(new_user), *(str(item_index[o]) for o in row[1:])]))

    out.mkdir(parents=True, exist_ok=True)
    (out / "sequential_data.txt").write_text("\n".join(new_lines) + "\n")
    maps = {
        "user2id": {v: k for k, v in id2user.items()},
        "item2id": {v: k for k, v in id2item.items()},
        "id2user": id2user,
        "id2item": id2item,
    }
    (out / "datamaps.json").write_text(json.dumps(maps))
    if new_attributes:
        (out / "item_attributes.json").write_text(json.dumps(new_attributes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    print(cut_p5_sample(args.source, args.out, users=args.users, seed=args.seed))


if __name__ == "__main__":
    main()
