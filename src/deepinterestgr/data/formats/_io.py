"""File helpers shared by the loaders: finding files, reading gz or plain text, parsing records with line numbers."""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from deepinterestgr.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def require_dir(path: str | Path, *, fmt: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; --path must be the folder holding the {fmt} files")
    return path


def find_file(folder: Path, patterns: tuple[str, ...], *, what: str, required: bool = True) -> Path | None:
    """The single file in `folder` matching the first pattern that matches anything."""
    for pattern in patterns:
        matches = sorted(folder.glob(pattern))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise DataError(f"{folder}: several {what} files match {pattern!r} ({names}); keep one per folder")
    if required:
        raise DataError(f"{folder}: missing {what} file (looked for {' or '.join(patterns)})")
    return None


def open_text(path: Path) -> IO[str]:
    """Open a text file that may be gzip-compressed (decided by its magic bytes, not its name)."""
    try:
        with path.open("rb") as raw:
            magic = raw.read(2)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_json(path: Path) -> object:
    """A whole JSON document, with the file and position in the error."""
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); fix or re-export the file") from None


def iter_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line: strict JSON, or a Python literal as in Amazon 2014 dumps."""
    try:
        with open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    try:
                        record = ast.literal_eval(line)
                    except (ValueError, SyntaxError):
                        raise DataError(
                            f"{path}:{lineno}: not a JSON object or Python dict literal; fix or remove the line"
                        ) from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected an object per line, got {type(record).__name__}")
                yield lineno, record
    except (EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: truncated or corrupt gzip file ({err}); download it again") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason}); is this the right file?") from None


def text_list(value: object) -> list[str]:
    """Normalise a field that may be a string, a list of strings, nested lists, or a stringified Python list."""
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                return text_list(ast.literal_eval(stripped))
            except (ValueError, SyntaxError):
                return [stripped]
        return [stripped] if stripped else []
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            for s in text_list(v):
                if s not in out:
                    out.append(s)
        return out
    return [str(value)]
