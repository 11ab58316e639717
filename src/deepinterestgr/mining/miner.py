"""The mine stage: captions (CMSA), intent descriptors (DCIM, or MLIM with several LLMs) and user interests.

Every answer goes through the `AnswerCache`, so a run resumes where it stopped and identical prompts (Amazon
Beauty has 3,088 distinct item texts for 12,101 items) are asked once. Answers that fail (cut off, malformed,
empty) keep the item's descriptors empty and are recorded, with their reason and raw text, in `failures`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from datasets import Dataset, Features, List, Value

from deepinterestgr.errors import ConfigError
from deepinterestgr.mining.backends import Backend
from deepinterestgr.mining.cache import AnswerCache, answer_all
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES, PromptTemplates
from deepinterestgr.mining.schema import parse_caption, parse_descriptors, parse_interests

_WORD = re.compile(r"\w+")  # Unicode words: a descriptor in any language has some


def source_name(backend: Backend) -> str:
    """How a backend is named in provenance columns: `local:HuggingFaceTB/SmolLM2-135M-Instruct`."""
    return f"{backend.name}:{backend.model}"


@dataclass
class MiningReport:
    """What a mining run produced: counts, rates and the failures with their raw answers."""

    items: int = 0
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # per source: distinct prompts
    valid: dict[str, int] = field(default_factory=dict)  # per source: usable answers
    failures: list[dict] = field(default_factory=list)  # item_id, task, source, reason, raw
    captions: int = 0

    def summary(self, items: Dataset) -> dict:
        """Report figures: schema-valid rate per source, descriptors per item, share repeating the item's words."""
        descriptors = items["descriptors"]
        with_any = [d for d in descriptors if d]
        own = [restates_item(d, row) for row, ds in zip(items, descriptors, strict=True) for d in ds]
        return {
            "items": self.items,
            "seconds": round(self.seconds, 1),
            "items_per_second": round(self.items / self.seconds, 2) if self.seconds else None,
            "valid_rate": {s: self.valid[s] / self.requests[s] for s in self.requests if self.requests[s]},
            "items_with_descriptors": len(with_any) / len(descriptors) if descriptors else 0.0,
            "descriptors_per_item": sum(map(len, descriptors)) / len(descriptors) if descriptors else 0.0,
            "distinct_descriptors": len({d for ds in descriptors for d in ds}),
            "own_words_share": sum(own) / len(own) if own else 0.0,
            "captions": self.captions,
            "failures": len(self.failures),
        }


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` without English stop words ("for", "with", "your", ...)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(_WORD.findall(text.lower())) - ENGLISH_STOP_WORDS


def restates_item(descriptor: str, item: Mapping) -> bool:
    """Whether the descriptor only repeats the item's own words (brand, categories, title, description): it tells
    nothing the catalogue did not (a descriptor without content words does not count)."""
    words = content_words(descriptor)
    parts = [item.get("title"), item.get("brand"), item.get("description"), *(item.get("categories") or [])]
    return bool(words) and words <= content_words(" ".join(p for p in parts if p))


def mine_captions(
    items: Dataset,
    captioner: Backend,
    cache: AnswerCache,
    report: MiningReport,
    *,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    retry_failed: bool = False,
    progress: bool = True,
) -> list[str | None]:
    """CMSA path 1: a recommendation-oriented caption of each item's image (None without image or on failure)."""
    rows = [n for n, image in enumerate(items["image"]) if image]
    requests = [templates.caption_request(items[n]) for n in rows]
    results = answer_all(
        captioner, requests, cache, retry_failed=retry_failed, progress=progress, description="captions"
    )
    captions: list[str | None] = [None] * len(items)
    for n, result in zip(rows, results, strict=True):
        parsed = parse_caption(result)
        if parsed.ok:
            captions[n] = parsed.caption
            report.captions += 1
        else:
            report.failures.append(_failure(items[n]["item_id"], "caption", captioner, parsed.failure, parsed.raw))
    return captions


def mine_descriptors(
    items: Dataset,
    backends: Sequence[Backend],
    cache: AnswerCache,
    report: MiningReport,
    *,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    reasoning: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> dict[str, list]:
    """DCIM descriptors (MLIM chain of thought with `reasoning`), merged over `backends` in order: a descriptor
    is kept once, from the first source that gave it, with the highest confidence any source gave it.
    Returns the columns `descriptors`, `descriptor_confidences`, `descriptor_sources`."""
    if not backends:
        raise ConfigError("mining needs at least one backend")
    requests = [templates.descriptors_request(row, reasoning=reasoning) for row in items]
    examples = templates.example_descriptors()
    merged: list[dict[str, list]] = [{} for _ in range(len(items))]  # descriptor -> [confidence, source]
    for backend in backends:
        source = source_name(backend)
        results = answer_all(
            backend, requests, cache, retry_failed=retry_failed, progress=progress, description=f"descriptors {source}"
        )
        report.requests[source] = len({r.key(backend.name, backend.model) for r in requests})
        valid_keys = set()
        for n, (request, result) in enumerate(zip(requests, results, strict=True)):
            parsed = parse_descriptors(result, examples=examples, reasoning=reasoning)
            if not parsed.ok:
                report.failures.append(
                    _failure(items[n]["item_id"], "descriptors", backend, parsed.failure, parsed.raw)
                )
                continue
            valid_keys.add(request.key(backend.name, backend.model))
            for text, confidence in zip(parsed.descriptors, parsed.confidences, strict=True):
                entry = merged[n].setdefault(text, [confidence, source])
                entry[0] = max(entry[0], confidence)
        report.valid[source] = len(valid_keys)
    return {
        "descriptors": [list(m) for m in merged],
        "descriptor_confidences": [[float(c) for c, _ in m.values()] for m in merged],
        "descriptor_sources": [[s for _, s in m.values()] for m in merged],
    }


def mine_items(
    items: Dataset,
    backends: Sequence[Backend],
    cache: AnswerCache,
    *,
    captioner: Backend | None = None,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    reasoning: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> tuple[Dataset, MiningReport]:
    """Items with `caption` (when a captioner is given; the descriptor prompts then see it), `descriptors`,
    `descriptor_confidences` and `descriptor_sources`, and the run's report."""
    started = time.perf_counter()
    report = MiningReport(items=len(items))
    if captioner is not None:
        captions = mine_captions(
            items, captioner, cache, report, templates=templates, retry_failed=retry_failed, progress=progress
        )
        items = _set_column(items, "caption", captions)
    columns = mine_descriptors(
        items, backends, cache, report, templates=templates, reasoning=reasoning, retry_failed=retry_failed,
        progress=progress,
    )  # fmt: skip
    for name, values in columns.items():
        items = _set_column(items, name, values)
    report.seconds = time.perf_counter() - started
    return items, report


def mine_user_interests(
    sequences: Dataset,
    items: Dataset,
    backend: Backend,
    cache: AnswerCache,
    *,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    retry_failed: bool = False,
    progress: bool = True,
) -> tuple[Dataset, list[dict]]:
    """MLIM user side: interests behind each user's history (`user_id`, `item_ids`; use the train split so no
    held-out item leaks in). Returns (`user_id`, `interests`) and the failures."""
    by_id = {row["item_id"]: row for row in items}
    requests = [templates.interests_request([by_id[i] for i in seq]) for seq in sequences["item_ids"]]
    results = answer_all(
        backend, requests, cache, retry_failed=retry_failed, progress=progress, description="user interests"
    )
    interests, failures = [], []
    for user, result in zip(sequences["user_id"], results, strict=True):
        parsed = parse_interests(result)
        interests.append(parsed.interests)
        if not parsed.ok:
            failures.append(_failure(user, "interests", backend, parsed.failure, parsed.raw))
    users = {"user_id": list(sequences["user_id"]), "interests": interests}
    return Dataset.from_dict(users, features=USER_FEATURES), failures


def _failure(item_id: str, task: str, backend: Backend, reason: str | None, raw: str) -> dict:
    return {"id": item_id, "task": task, "source": source_name(backend), "reason": reason, "raw": raw}


USER_FEATURES = Features({"user_id": Value("string"), "interests": List(Value("string"))})
COLUMN_TYPES = {
    "caption": Value("string"),
    "descriptors": List(Value("string")),
    "descriptor_confidences": List(Value("float32")),
    "descriptor_sources": List(Value("string")),
}


def _set_column(items: Dataset, name: str, values: list) -> Dataset:
    """Add (or replace) a column with its declared type, so an all-empty column is still typed."""
    if name in items.column_names:
        items = items.remove_columns(name)
    return items.add_column(name, values, feature=COLUMN_TYPES[name])
