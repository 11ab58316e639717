"""The Mine tab: paste an item's text (and a photo), get its caption, intent descriptors, judge labels and quality.

The backend comes from the environment, never from the page:
- `DEEPINTERESTGR_MINER`: `local:<Hub id or folder>` (a transformers chat model on this machine; SmolLM2-135M-
  Instruct's Hub id uses the packaged offline copy when no hub is reachable), or `served:<base URL>` / a bare
  `http(s)://` URL (an OpenAI-compatible endpoint; `DEEPINTERESTGR_MINER_MODEL` names the model it serves).
- `DEEPINTERESTGR_CAPTIONER` (optional, same forms): an image-text-to-text model for CMSA captions of an uploaded
  photo; the caption then joins the text the descriptors are mined from.

Descriptors are mined with the library's DCIM prompt and parser (`mining.miner.mine_items`), labelled by the
grounding judge for a local model or the 0/1 prompt judge for a served one, and weighed into the QARM quality.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from datasets import Dataset

from deepinterestgr.data.schema import ITEM_FEATURES
from deepinterestgr.errors import ConfigError
from deepinterestgr.mining.backends import Backend
from deepinterestgr.mining.cache import AnswerCache
from deepinterestgr.mining.judge import JudgeReport, grounding_scores, llm_labels, with_labels
from deepinterestgr.mining.miner import mine_items, source_name
from deepinterestgr.mining.prompts import DEFAULT_TEMPLATES, PromptTemplates
from deepinterestgr.offline_models import SMOLLM2_ID
from deepinterestgr.space.data import InputError

ENV_MINER = "DEEPINTERESTGR_MINER"
ENV_MINER_MODEL = "DEEPINTERESTGR_MINER_MODEL"
ENV_CAPTIONER = "DEEPINTERESTGR_CAPTIONER"
ENV_CAPTIONER_MODEL = "DEEPINTERESTGR_CAPTIONER_MODEL"

MAX_TEXT_CHARS = 2000
GROUNDING_THRESHOLD = 0.0  # the judge stage's default: labelled 1 when the item makes the descriptor more likely
DESCRIPTOR_COLUMNS = ["descriptor", "confidence", "label", "grounding"]
FIELDS = {"title": "title", "brand": "brand", "categories": "categories", "category": "categories"}
FIELDS |= {"description": "description", "photo": "caption", "caption": "caption"}
_FIELD_LINE = re.compile(r"^\s*([A-Za-z]+)\s*:\s*(.*)$")

HOW_TO_CONFIGURE = (
    f"Mining is not configured on this Space. Set `{ENV_MINER}` before starting it, e.g. "
    f"`{ENV_MINER}=local:{SMOLLM2_ID}` (a chat model run here) or `{ENV_MINER}=http://127.0.0.1:8000/v1` with "
    f"`{ENV_MINER_MODEL}=<model>` (an OpenAI-compatible server: vLLM, TGI, llama.cpp, Ollama); optionally "
    f"`{ENV_CAPTIONER}` for photo captions (an image-text-to-text model)."
)


@dataclass(frozen=True)
class BackendSetting:
    """Which model answers: `local` (a Hub id or folder, run here) or `served` (an endpoint and a model name)."""

    kind: str
    target: str  # local: the model id or folder; served: the base URL
    model: str  # served: the model name sent with each request (local: same as target)

    def describe(self) -> str:
        return f"local model {self.target}" if self.kind == "local" else f"{self.model} served at {self.target}"

    def load(self) -> Backend:
        """Load the model (local) or connect the client (served)."""
        if self.kind == "local":
            from deepinterestgr.mining.local import LocalBackend

            return LocalBackend(self.target, batch_size=8)
        from deepinterestgr.mining.served import ServedBackend

        return ServedBackend(self.target, self.model, concurrency=4)


def parse_backend(value: str, *, served_model: str | None = None, variable: str = ENV_MINER) -> BackendSetting:
    """`local:<model>`, `served:<url>` or a bare `http(s)://` URL; anything else is a ConfigError naming the forms."""
    value = value.strip()
    kind, _, rest = value.partition(":")
    if kind in ("http", "https"):
        kind, rest = "served", value
    rest = rest.strip()
    if kind == "local" and rest:
        return BackendSetting("local", rest, rest)
    if kind == "served" and rest.startswith(("http://", "https://")):
        return BackendSetting("served", rest, served_model or SMOLLM2_ID)
    raise ConfigError(
        f"{variable}={value!r}: use local:<Hub id or folder> (e.g. local:{SMOLLM2_ID}), "
        "served:<http(s) URL of an OpenAI-compatible endpoint>, or the URL alone"
    )


def item_from_text(text: str | None, *, image: str | None = None) -> dict:
    """An item row from pasted text: lines `Title:`, `Brand:`, `Categories:` (split on `>` or `,`),
    `Description:` and `Photo:` fill those fields; every other line joins the description."""
    text = (text or "").strip()
    if not text:
        raise InputError("paste an item's text first (its title, brand, categories or description)")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the item text has {len(text):,} characters; at most {MAX_TEXT_CHARS:,}")
    fields: dict[str, str] = {}
    loose: list[str] = []
    for line in text.splitlines():
        match = _FIELD_LINE.match(line)
        name = FIELDS.get(match.group(1).lower()) if match else None
        if match and name:
            fields[name] = " ".join(filter(None, (fields.get(name), match.group(2).strip())))
        elif line.strip():
            loose.append(line.strip())
    description = " ".join(filter(None, (fields.get("description"), *loose))) or None
    categories = [c.strip() for c in re.split(r"[>,]", fields.get("categories", "")) if c.strip()]
    return {
        "item_id": "pasted",
        "title": fields.get("title") or None,
        "description": description,
        "brand": fields.get("brand") or None,
        "categories": categories,
        "image": image or None,
        "caption": fields.get("caption") or None,
    }


@dataclass(frozen=True)
class MinedDescriptor:
    descriptor: str
    confidence: float
    label: int
    score: float | None  # grounding score (local judge); None for the prompt judge


@dataclass(frozen=True)
class MinedItem:
    """What mining one pasted item gave; `failure` says why there are no descriptors (with the raw answer)."""

    caption: str | None
    descriptors: list[MinedDescriptor]
    quality: float | None
    judge: str
    source: str
    seconds: float
    failure: str | None = None
    raw: str | None = None
    caption_failure: str | None = None  # why a photo got no caption (the descriptors are mined without one)


class Miner:
    """Loads its backends on first use and mines one item at a time; answers are cached for the process."""

    def __init__(
        self,
        miner: BackendSetting | Backend | None,
        captioner: BackendSetting | Backend | None = None,
        *,
        templates: PromptTemplates = DEFAULT_TEMPLATES,
    ) -> None:
        self._settings = {"miner": miner, "captioner": captioner}
        self._loaded: dict[str, Backend] = {}
        self.templates = templates
        self._lock = threading.Lock()
        self._cache_dir = tempfile.TemporaryDirectory(prefix="deepinterestgr-space-")
        self._cache: AnswerCache | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Miner:
        """The miner the environment names (unconfigured when `DEEPINTERESTGR_MINER` is unset)."""
        env = os.environ if environ is None else environ
        miner = env.get(ENV_MINER)
        captioner = env.get(ENV_CAPTIONER)
        return cls(
            parse_backend(miner, served_model=env.get(ENV_MINER_MODEL)) if miner else None,
            parse_backend(captioner, served_model=env.get(ENV_CAPTIONER_MODEL), variable=ENV_CAPTIONER)
            if captioner
            else None,
        )

    @property
    def configured(self) -> bool:
        return self._settings["miner"] is not None

    @property
    def can_caption(self) -> bool:
        return self._settings["captioner"] is not None

    def describe(self) -> str:
        """Markdown: which models answer, or how to configure mining."""
        if not self.configured:
            return HOW_TO_CONFIGURE
        text = f"Descriptors from {self._name('miner')}"
        if self.can_caption:
            text += f"; photo captions from {self._name('captioner')}"
        return text + ". The first request loads the model."

    def _name(self, role: str) -> str:
        setting = self._settings[role]
        return setting.describe() if isinstance(setting, BackendSetting) else source_name(setting)

    def _backend(self, role: str) -> Backend:
        if role not in self._loaded:
            setting = self._settings[role]
            self._loaded[role] = setting.load() if isinstance(setting, BackendSetting) else setting
        return self._loaded[role]

    def mine(self, text: str | None, *, image: str | None = None) -> MinedItem:
        """Caption (with a photo and a captioner), descriptors, labels and quality of the pasted item."""
        if not self.configured:
            raise InputError(HOW_TO_CONFIGURE)
        if image and not self.can_caption:
            raise InputError(f"photo captions need {ENV_CAPTIONER} (an image-text-to-text model); remove the photo")
        item = item_from_text(text, image=image)
        if not any(item[f] for f in ("title", "description", "brand", "categories", "caption")) and not image:
            raise InputError("the pasted text has no item facts to mine from")
        started = time.perf_counter()
        with self._lock:
            if self._cache is None:
                self._cache = AnswerCache(Path(self._cache_dir.name) / "answers.sqlite")
            backend = self._backend("miner")
            captioner = self._backend("captioner") if image else None
            features = ITEM_FEATURES.copy()
            features["caption"] = ITEM_FEATURES["title"]
            items = Dataset.from_list([item], features=features)
            mined, report = mine_items(
                items, [backend], self._cache, captioner=captioner, templates=self.templates, progress=False
            )
            caption = mined[0]["caption"] if captioner is not None else item["caption"]
            failures = {f["task"]: f for f in report.failures}
            caption_failure = failures["caption"]["reason"] if "caption" in failures else None
            done = {"caption": caption, "source": source_name(backend), "caption_failure": caption_failure}
            if not mined[0]["descriptors"]:
                failure = failures.get("descriptors", {"reason": "no descriptors", "raw": ""})
                seconds = time.perf_counter() - started
                return MinedItem(**done, descriptors=[], quality=None, judge="—", seconds=seconds,
                                 failure=failure["reason"], raw=failure["raw"])  # fmt: skip
            if hasattr(backend, "loglikelihood"):
                judge = f"grounding (log-likelihood gain > {GROUNDING_THRESHOLD})"
                scores = grounding_scores(mined, backend, self._cache, templates=self.templates)
                labels = [[int(s > GROUNDING_THRESHOLD) for s in row] for row in scores]
            else:
                judge, scores = "0/1 prompt judge", None
                labels = llm_labels(mined, backend, self._cache, JudgeReport("llm"), progress=False)
            judged = with_labels(mined, labels, scores)[0]
        row_scores = judged.get("descriptor_scores") or [None] * len(judged["descriptors"])
        descriptors = [
            MinedDescriptor(d, float(c), int(y), None if s is None else float(s))
            for d, c, y, s in zip(
                judged["descriptors"],
                judged["descriptor_confidences"],
                judged["descriptor_labels"],
                row_scores,
                strict=True,
            )
        ]
        seconds = time.perf_counter() - started
        return MinedItem(
            **done, descriptors=descriptors, quality=float(judged["quality"]), judge=judge, seconds=seconds
        )


def descriptors_frame(result: MinedItem) -> pd.DataFrame:
    rows = [
        [d.descriptor, round(d.confidence, 3), d.label, "—" if d.score is None else round(d.score, 3)]
        for d in result.descriptors
    ]
    return pd.DataFrame(rows, columns=DESCRIPTOR_COLUMNS)


def mined_summary(result: MinedItem) -> str:
    """Markdown: quality (or the failure and the raw answer), where the answer came from, and a caption failure."""
    note = f"\n\nNo caption for the photo: {result.caption_failure}." if result.caption_failure else ""
    return _descriptor_summary(result) + note


def _descriptor_summary(result: MinedItem) -> str:
    if result.failure:
        raw = (result.raw or "").strip()[:500]
        return (
            f"No usable descriptors from {result.source}: {result.failure}."
            + (f"\n\nRaw answer: `{raw}`" if raw else "")
            + f"\n\n({result.seconds:.1f} s)"
        )
    positive = sum(d.label for d in result.descriptors)
    return (
        f"**Quality q = {result.quality:.2f}** — {positive} of {len(result.descriptors)} descriptor(s) labelled 1 by "
        f"the {result.judge}, weighed by confidence. Mined by {result.source} in {result.seconds:.1f} s."
    )


def catalogue_text(items: Mapping, item_id: str | None, templates: PromptTemplates = DEFAULT_TEMPLATES) -> str:
    """The text the mining prompt shows for catalogue item `item_id` (to paste into the Mine tab)."""
    item_id = (item_id or "").strip()
    if item_id not in items:
        raise InputError(f"unknown item {item_id[:64]!r}: use the item search of the Recommend tab to find ids")
    return templates.item_text(items[item_id].facts())
