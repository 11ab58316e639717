"""What every mining backend does: answer chat requests, optionally constrained to a JSON schema.

Two implementations: `LocalBackend` (mining/local.py: any transformers causal LM or image-text-to-text model,
batched, on this machine) and `ServedBackend` (mining/served.py: any OpenAI-compatible endpoint through
`huggingface_hub.InferenceClient`). Results stream back as they complete, so the caller can store each one at once
(the cache) and an interrupted run loses at most the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class GenerationRequest:
    """One chat request. `images` are local file paths (or URLs for served VLMs), attached to the last user turn."""

    messages: tuple[dict, ...]  # [{"role": "system"|"user"|"assistant", "content": str}, ...]
    json_schema: dict | None = None  # constrain the answer to this JSON schema (grammar / response_format)
    max_new_tokens: int = 256
    images: tuple[str, ...] = field(default_factory=tuple)

    def key(self, backend: str, model: str) -> str:
        """Stable hash of the request for `backend` + `model`: the cache key."""
        payload = json.dumps({"backend": backend, "model": model, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class GenerationResult:
    text: str  # the raw answer (kept even when it is cut off or malformed, for the failure record)
    finish_reason: FinishReason  # "length": cut at max_new_tokens; "error": see `error`
    error: str | None = None
    # Token counts where the backend knows them (LocalBackend; the server's `usage`). Metadata of one generation,
    # not part of the answer: they take no part in equality, and the answer cache does not store them.
    prompt_tokens: int | None = field(default=None, compare=False)
    completion_tokens: int | None = field(default=None, compare=False)  # answer tokens, the stop token excluded


@runtime_checkable
class Backend(Protocol):
    """A source of answers. `name` (e.g. "local", "served") and `model` identify it in cache keys and provenance."""

    name: str
    model: str

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield (index into `requests`, result) as each answer completes, in any order; every index once."""
        ...
