"""The judge stage: label each mined descriptor 1 (specific, actionable, grounded) or 0, then item quality q_i.

Three judges:
- `llm`: the papers' 0/1 prompt judge (QARM / RLDI labels), for capable models (served or local);
- `grounding`: for small local models, which answer "1" to nearly everything (measured with SmolLM2-135M): how
  much more likely the model finds the descriptor after the real item than after a blank one, per token,
  `(log p(d | item) - log p(d | blank)) / tokens(d)`, labelled 1 above `threshold` unless the descriptor only
  restates the item's own words or repeats a word (grounded, but not actionable). On 60 hand-labelled Beauty pairs
  (benchmarks/judge_calibration.py) the veto matters most: ROC AUC 0.67 -> 0.71 per token (0.57 -> 0.73 raw);
- `classifier`: the RLDI classifier (mining/classifier.py) trained on either judge's labels, to label at scale.
Scores and answers are cached like the miner's, so a judge run resumes too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from datasets import Dataset, List, Value
from tqdm.auto import tqdm

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.mining.backends import Backend, GenerationRequest, GenerationResult
from deepinterestgr.mining.cache import AnswerCache, answer_all
from deepinterestgr.mining.classifier import DescriptorClassifier
from deepinterestgr.mining.miner import restates_item, source_name
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES, PromptTemplates
from deepinterestgr.mining.quality import quality_column
from deepinterestgr.mining.schema import parse_label

GROUNDING_CUE = "Why a shopper wants it: "  # the continuation (a descriptor) follows this cue
BLANK_ITEM = "Product: (no information)"


@dataclass
class JudgeReport:
    method: str
    pairs: int = 0
    positive: int = 0
    failures: list[dict] = field(default_factory=list)  # item_id, descriptor, reason, raw (llm judge)

    def summary(self) -> dict:
        rate = self.positive / self.pairs if self.pairs else 0.0
        return {"method": self.method, "pairs": self.pairs, "positive_rate": rate, "failures": len(self.failures)}


def _pairs(items: Dataset) -> list[tuple[int, str]]:
    if "descriptors" not in items.column_names:
        raise DataError("items: no `descriptors` column to judge; run `deepinterestgr mine` first")
    return [(n, d) for n, ds in enumerate(items["descriptors"]) for d in ds or []]


def _regroup(items: Dataset, pairs: list[tuple[int, str]], values: list) -> list[list]:
    out: list[list] = [[] for _ in range(len(items))]
    for (n, _), value in zip(pairs, values, strict=True):
        out[n].append(value)
    return out


def llm_labels(
    items: Dataset,
    backend: Backend,
    cache: AnswerCache,
    report: JudgeReport,
    *,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    progress: bool = True,
) -> list[list[int]]:
    """The 0/1 prompt judge; an answer that cannot be parsed counts as 0 and is recorded in `report.failures`."""
    pairs = _pairs(items)
    rows = [items[n] for n, _ in pairs]
    requests = [templates.judge_request(row, d) for row, (_, d) in zip(rows, pairs, strict=True)]
    results = answer_all(backend, requests, cache, progress=progress, description=f"judge {source_name(backend)}")
    labels = []
    for row, (_, descriptor), result in zip(rows, pairs, results, strict=True):
        parsed = parse_label(result)
        if not parsed.ok:
            report.failures.append(
                {"id": row["item_id"], "descriptor": descriptor, "reason": parsed.failure, "raw": parsed.raw}
            )
        labels.append(parsed.label if parsed.ok else 0)
    return _regroup(items, pairs, labels)


def grounding_scores(
    items: Dataset,
    backend,
    cache: AnswerCache,
    *,
    templates: PromptTemplates = DEFAULT_TEMPLATES,
    batch_size: int = 64,
    per_token: bool = True,
    progress: bool = True,
) -> list[list[float]]:
    """`log p(d | item) - log p(d | blank item)` for every descriptor (divided by its token count with
    `per_token`), with a `LocalBackend` (it needs `loglikelihood`). Each log-likelihood is cached under the
    (context, descriptor) it was computed from."""
    if not hasattr(backend, "loglikelihood"):
        raise ConfigError(f"the grounding judge needs a local model to score text; {source_name(backend)} cannot")
    pairs = _pairs(items)
    contexts = [templates.item_text(items[n]) for n, _ in pairs]
    jobs = [(f"{c}\n{GROUNDING_CUE}", d) for c, (_, d) in zip(contexts, pairs, strict=True)]
    jobs += [(f"{BLANK_ITEM}\n{GROUNDING_CUE}", d) for _, d in pairs]
    keys = [_score_key(backend, context, descriptor) for context, descriptor in jobs]
    missing = list(dict.fromkeys(k for k in keys if cache.get(k) is None))
    by_key = dict(zip(keys, jobs, strict=True))
    bar = tqdm(total=len(keys), initial=len(keys) - len(missing), desc="grounding", unit="score", disable=not progress)
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        for key, value in zip(chunk, backend.loglikelihood([by_key[k] for k in chunk]), strict=True):
            cache.put(key, GenerationResult(text=repr(float(value)), finish_reason="stop"))
        bar.update(len(chunk))
    bar.close()
    values = [float(cache.get(k).text) for k in keys]
    real, blank = values[: len(pairs)], values[len(pairs) :]
    scores = [r - b for r, b in zip(real, blank, strict=True)]
    if per_token:
        lengths = [max(1, len(backend.tokenizer(d, add_special_tokens=False)["input_ids"])) for _, d in pairs]
        scores = [s / n for s, n in zip(scores, lengths, strict=True)]
    return _regroup(items, pairs, scores)


def grounding_labels(items: Dataset, scores: list[list[float]], *, threshold: float = 1.25) -> list[list[int]]:
    """1 for a descriptor scored above `threshold` that neither restates the item's own words nor repeats a word.

    The default threshold (per-token scores) is the one `benchmarks/judge_calibration.py` found best on the
    hand-labelled pairs (balanced accuracy 0.77 with SmolLM2-135M-Instruct); other models need their own."""
    labels = []
    for row, descriptors, row_scores in zip(items, items["descriptors"], scores, strict=True):
        labels.append(
            [
                int(score > threshold and not restates_item(d, row) and not _repeats_a_word(d))
                for d, score in zip(descriptors or [], row_scores, strict=True)
            ]
        )
    return labels


def _repeats_a_word(descriptor: str) -> bool:
    words = [w for w in descriptor.lower().replace(",", " ").split() if w]
    return len(words) != len(set(words))


def _score_key(backend, context: str, continuation: str) -> str:
    """Cache key of a log-likelihood: the request that would carry the same text (never sent anywhere)."""
    request = GenerationRequest(
        messages=({"role": "context", "content": context}, {"role": "continuation", "content": continuation}),
        max_new_tokens=1,
    )
    return request.key("loglikelihood", backend.model)


def classifier_labels(items: Dataset, classifier: DescriptorClassifier, *, threshold: float = 0.5) -> list[list[int]]:
    """RLDI labels: P(1) of each (descriptor, item text) pair from the trained classifier, thresholded."""
    pairs = _pairs(items)
    texts = [DEFAULT_TEMPLATES.item_text(items[n]) for n, _ in pairs]
    probs = classifier.predict_proba([d for _, d in pairs], texts)
    return _regroup(items, pairs, [int(p >= threshold) for p in probs])


def train_classifier(items: Dataset, **kwargs) -> DescriptorClassifier:
    """RLDI: fit the classifier to the `descriptor_labels` of judged items (any judge)."""
    if "descriptor_labels" not in items.column_names:
        raise DataError("items: no `descriptor_labels` to learn from; judge a sample with `llm` or `grounding` first")
    pairs = _pairs(items)
    labels = [y for ys in items["descriptor_labels"] for y in ys or []]
    texts = [DEFAULT_TEMPLATES.item_text(items[n]) for n, _ in pairs]
    return DescriptorClassifier.fit([d for _, d in pairs], texts, labels, **kwargs)


def with_labels(items: Dataset, labels: list[list[int]], scores: list[list[float]] | None = None) -> Dataset:
    """Items with `descriptor_labels` (+ `descriptor_scores`) and the QARM `quality` they imply."""
    columns: Mapping[str, tuple[list, object]] = {
        "descriptor_labels": (labels, List(Value("int8"))),
        **({"descriptor_scores": (scores, List(Value("float32")))} if scores is not None else {}),
    }
    for name, (values, feature) in columns.items():
        if name in items.column_names:
            items = items.remove_columns(name)
        items = items.add_column(name, values, feature=feature)
    if "quality" in items.column_names:
        items = items.remove_columns("quality")
    return items.add_column("quality", quality_column(items), feature=Value("float32"))
