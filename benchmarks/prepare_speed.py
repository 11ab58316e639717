"""Wall time and size of `prepare` on the real data sets in ../shared/data (or a folder given with --root).

Run: `.venv/bin/python benchmarks/prepare_speed.py [--root ../shared/data/amazon]`
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from deepinterestgr.data import PreparedData, prepare

CASES = [
    ("p5", "beauty"),
    ("minionerec", "industrial_and_scientific"),
    ("minionerec", "office_products"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amazon")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| format | data | users | items | interactions | title coverage | prepare+save s | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt, name in CASES:
        start = time.perf_counter()
        data = prepare(fmt, args.root / name, max_history=50)
        with tempfile.TemporaryDirectory() as tmp:
            data.save_to_disk(Path(tmp) / "p")
            elapsed = time.perf_counter() - start
            start = time.perf_counter()
            PreparedData.load_from_disk(Path(tmp) / "p")
            load = time.perf_counter() - start
        s = data.stats()
        print(
            f"| {fmt} | {name} | {s.users:,} | {s.items:,} | {s.interactions:,} | {s.coverage['title']:.1%} "
            f"| {elapsed:.2f} | {load:.2f} |"
        )


if __name__ == "__main__":
    main()
