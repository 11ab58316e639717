"""The answer cache: each backend answer is stored on disk the moment it arrives, so a re-run asks only what is missing.

One SQLite file (stdlib `sqlite3`, WAL journal, one row per answer keyed by `GenerationRequest.key(backend, model)`).
SQLite commits are atomic, so a run killed at any moment (even `kill -9`) loses at most the requests that were in
flight and never leaves a half-written row or a corrupt file. Failures ("length", "error") are stored too, with their
raw text, and `answer_all(..., retry_failed=True)` asks them again.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tqdm.auto import tqdm

from deepinterestgr.mining.backends import Backend, GenerationRequest, GenerationResult

SCHEMA_VERSION = 1
_CREATE = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL CHECK (finish_reason IN ('stop', 'length', 'error')),
    error TEXT,
    created REAL NOT NULL
)
"""


class AnswerCache:
    """Answers on disk, keyed by request key. Thread-safe: one connection guarded by a lock, one commit per `put`.

    Several processes may share one file (SQLite locks it); a writer waits up to `timeout` seconds for the lock.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, so every statement below is its own atomic transaction.
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a killed process loses nothing committed; only a power cut may drop the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(
                    f"answer cache {self.path}: schema version {version}, this library writes {SCHEMA_VERSION}; "
                    "point the cache at a new file (or delete this one to re-ask every request)"
                )
            self._db.execute(_CREATE)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise ValueError(
                f"answer cache {self.path} is not a readable SQLite answer cache ({err}); "
                "point the cache at a new file, or delete this one to re-ask every request"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def get(self, key: str) -> GenerationResult | None:
        """The stored answer for `key` (failures included), or None if it was never answered. Token counts are not
        stored (usage metadata, not part of the answer): a stored answer has `prompt_tokens=None`."""
        with self._lock:
            row = self._db.execute("SELECT text, finish_reason, error FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else GenerationResult(text=row[0], finish_reason=row[1], error=row[2])

    def put(self, key: str, result: GenerationResult) -> None:
        """Store `result` under `key` (replacing an earlier answer, e.g. a failure that was asked again); committed."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, text, finish_reason, error, created) VALUES (?, ?, ?, ?, ?)",
                (key, result.text, result.finish_reason, result.error, time.time()),
            )

    def counts(self) -> dict[str, int]:
        """Number of stored answers per finish reason."""
        with self._lock:
            rows = self._db.execute("SELECT finish_reason, COUNT(*) FROM answers GROUP BY finish_reason").fetchall()
        return {reason: count for reason, count in rows}

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def export_jsonl(self, path: str | Path) -> int:
        """Write every stored answer to `path` (gzip JSON lines, sorted by key, so exports diff and merge well) and
        return the count: a portable copy of a long run to commit or ship, which `import_jsonl` merges back."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, text, finish_reason, error, created FROM answers ORDER BY key"
            ).fetchall()
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for key, text, reason, error, created in rows:
                f.write(
                    json.dumps({"key": key, "text": text, "finish_reason": reason, "error": error, "created": created})
                )
                f.write("\n")
        tmp.replace(path)  # a killed export leaves the previous file whole
        return len(rows)

    def import_jsonl(self, path: str | Path) -> int:
        """Merge answers exported by `export_jsonl` into this cache (answers already here win); returns how many
        were added. A line that is not such an answer is an error naming the file and line."""
        added = 0
        with gzip.open(path, "rt", encoding="utf-8") as f, self._lock:
            self._db.execute("BEGIN")  # one transaction: a bad line leaves the cache as it was
            try:
                added = self._import_rows(path, f)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return added

    def _import_rows(self, path: str | Path, lines) -> int:
        added = 0
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                values = (row["key"], row["text"], row["finish_reason"], row["error"], float(row["created"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}, line {number}: not an exported answer ({err!r})") from None
            if values[2] not in ("stop", "length", "error"):
                raise ValueError(f"{path}, line {number}: finish_reason {values[2]!r} is not stop/length/error")
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO answers (key, text, finish_reason, error, created) VALUES (?, ?, ?, ?, ?)",
                values,
            )
            added += cursor.rowcount
        return added

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.path)!r})"


def answer_all(
    backend: Backend,
    requests: Sequence[GenerationRequest],
    cache: AnswerCache,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    description: str | None = None,
) -> list[GenerationResult]:
    """Answers to `requests`, in order: from `cache` where stored, else from `backend`, each stored as it arrives.

    Identical requests are sent once. Stored failures ("length", "error") are returned as they are unless
    `retry_failed`, which asks them again. If the run stops (an exception, Ctrl-C, a kill), every answer received
    so far is already in the cache and the next call resumes from there.
    """
    keys = [request.key(backend.name, backend.model) for request in requests]
    results: list[GenerationResult | None] = [None] * len(requests)
    positions: dict[str, list[int]] = {}  # key to ask -> every position that wants its answer
    reused: dict[str, GenerationResult] = {}  # key -> stored answer used as it is
    cached = failed = 0
    for position, key in enumerate(keys):
        if key in positions:  # a duplicate of a request already queued
            positions[key].append(position)
        elif key in reused:  # a duplicate of a request already answered from the cache
            results[position] = reused[key]
        elif (stored := cache.get(key)) is not None and (stored.finish_reason == "stop" or not retry_failed):
            results[position] = reused[key] = stored
            cached += 1
            failed += stored.finish_reason != "stop"
        else:
            positions[key] = [position]

    todo = list(positions)
    unique = cached + len(todo)
    bar = tqdm(
        total=unique,
        initial=cached,
        desc=description or f"{backend.name}:{backend.model}",
        unit="answer",
        disable=not progress,
        dynamic_ncols=True,
    )
    bar.set_postfix(cached=cached, failed=failed, refresh=False)
    seen: set[int] = set()
    try:
        if todo:
            for index, result in backend.generate([requests[positions[key][0]] for key in todo]):
                if not 0 <= index < len(todo) or index in seen:
                    raise RuntimeError(
                        f"backend {backend.name}:{backend.model} yielded index {index} "
                        f"({'already answered' if index in seen else 'out of range'}) for {len(todo)} requests"
                    )
                seen.add(index)
                key = todo[index]
                cache.put(key, result)
                for position in positions[key]:
                    results[position] = result
                failed += result.finish_reason != "stop"
                bar.update(1)
                bar.set_postfix(cached=cached, failed=failed, refresh=False)
    finally:
        bar.close()
    if len(seen) != len(todo):
        raise RuntimeError(
            f"backend {backend.name}:{backend.model} answered {len(seen)} of {len(todo)} requests; "
            "the answers received are cached, run again to ask the rest"
        )
    return results  # type: ignore[return-value]  # every position is filled: checked above
