"""Mine the bundled sample's user interests (MLIM user side) with SmolLM2-135M-Instruct on this machine.

Each of the 2,000 users' train history (the last 10 items shown) goes to the interests prompt; the answers feed
the interest-aware GRPO reward (ablation (f)) and ship with the sample as `user_interests.parquet`, which
`mine.bundled` with `mine.user_interests: true` joins instead of mining. Resumable: answers are cached in
`--out/cache.sqlite`; kill it at any time and run it again. `--shard K/N` runs one slice per core; a last run
without `--shard` answers from the shared cache and writes the outputs.

Run: `.venv/bin/python benchmarks/mine_sample_users.py [--out runs/mining-users] [--limit N] [--threads 1]`
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter
from pathlib import Path

import torch

from deepinterestgr.data import load_sample
from deepinterestgr.data.prepare import sample_path
from deepinterestgr.mining.cache import AnswerCache
from deepinterestgr.mining.local import LocalBackend
from deepinterestgr.mining.miner import mine_user_interests, restates_item
from deepinterestgr.stages import BUNDLED_USERS

REPORT = Path(__file__).resolve().parent / "data" / "sample_user_interests_report.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/mining-users"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N users (nothing is written)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard", default=None, help="K/N: only the K-th of N slices of the users")
    parser.add_argument("--sample-out", type=Path, default=sample_path() / BUNDLED_USERS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_sample()
    train = data.splits["train"]
    if args.limit:
        train = train.select(range(args.limit))
    shard = None
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        train = train.filter(lambda row: zlib.crc32(row["user_id"].encode()) % n == k)
        shard = f"shard-{k}-of-{n}"
    backend = LocalBackend(batch_size=args.batch_size)
    with AnswerCache(args.out / "cache.sqlite") as cache:
        started = time.perf_counter()
        users, failures = mine_user_interests(train, data.items, backend, cache)
        seconds = time.perf_counter() - started
    if shard or args.limit:
        print(f"{len(users):,} users in {seconds:.0f} s ({len(users) / seconds:.2f} users/s)")
        return
    by_id = {row["item_id"]: row for row in data.items}
    flat = [
        (interest, seq)
        for interests, seq in zip(users["interests"], train["item_ids"], strict=True)
        for interest in interests
    ]
    # an interest "restates the history" when all its content words are in one of the shown items' own text
    restating = sum(any(restates_item(i, by_id[item]) for item in seq[-10:]) for i, seq in flat)
    counts = Counter(interest for interest, _ in flat)
    report = {
        "model": backend.model,
        "users": len(users),
        "schema_valid_rate": 1 - len(failures) / len(users),
        "users_with_interests": sum(bool(i) for i in users["interests"]) / len(users),
        "interests_per_user": len(flat) / len(users),
        "distinct_interests": len(counts),
        "restating_share": restating / len(flat) if flat else 0.0,
        "most_common": counts.most_common(10),
        "failure_reasons": dict(Counter(str(failure["reason"]) for failure in failures)),
    }
    users.to_parquet(str(args.sample_out))
    with (args.out / "failures.jsonl").open("w") as f:
        f.writelines(json.dumps(failure) + "\n" for failure in failures)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"{len(users):,} users written to {args.sample_out}")


if __name__ == "__main__":
    main()
