"""Structured outputs of interest mining (DESIGN.md), their JSON schemas, and the parsing of raw answers.

The pydantic models are the single source of truth: `json_schema(Model)` is what a local backend compiles into a
grammar (xgrammar) and what a served backend sends as `response_format`, and `parse_*` validates an answer against
the same model. Parsing never hides a bad answer: a malformed, empty or cut-off answer (finish_reason "length")
comes back with `failure` set to the reason and the raw text kept, so the miner can record and retry it.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepinterestgr.mining.backends import GenerationResult

MAX_DESCRIPTORS = 8  # per answer; DCIM asks for a short ordered list
MAX_DESCRIPTOR_CHARS = 60  # longer "descriptors" are sentences, not intents
MAX_REASONING_CHARS = 400  # MLIM chain of thought, kept short: every character is a decoding step
MAX_INTERESTS = 8

_PUNCTUATION = string.punctuation + "“”‘’«»…–—·•"
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class _Strict(BaseModel):
    """Unknown keys are an error (the schema says `additionalProperties: false`), and models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# String lengths are in the schema (they bound constrained decoding) but not validated: parsing drops an empty or
# over-long descriptor and keeps the rest of the answer.
_PHRASE = {"minLength": 1, "maxLength": MAX_DESCRIPTOR_CHARS}


class Descriptor(_Strict):
    descriptor: str = Field(json_schema_extra=_PHRASE)
    confidence: float = Field(ge=0.0, le=1.0)


class Descriptors(_Strict):
    """DCIM: ordered item-side intent descriptors, most important first, each with a confidence in [0, 1]."""

    descriptors: list[Descriptor] = Field(min_length=1, json_schema_extra={"maxItems": MAX_DESCRIPTORS})


class ReasonedDescriptors(_Strict):
    """MLIM chain of thought: a short reasoning first, then the same descriptors (still one parseable JSON)."""

    reasoning: str = Field(json_schema_extra={"maxLength": MAX_REASONING_CHARS})
    descriptors: list[Descriptor] = Field(min_length=1, json_schema_extra={"maxItems": MAX_DESCRIPTORS})


Interest = Annotated[str, Field(json_schema_extra=_PHRASE)]


class UserInterests(_Strict):
    """MLIM user side: the interests behind a user's history, most important first."""

    interests: list[Interest] = Field(min_length=1, json_schema_extra={"maxItems": MAX_INTERESTS})


class JudgeLabel(_Strict):
    """QARM / RLDI: 1 if the descriptor is specific, actionable and grounded in the item, else 0."""

    label: Literal[0, 1]


def json_schema(model: type[BaseModel]) -> dict:
    """The JSON schema of `model` (for grammar-constrained decoding or an endpoint's `response_format`)."""
    return model.model_json_schema()


def normalize_descriptor(text: str) -> str:
    """Canonical form used for storage, de-duplication and example matching: Unicode NFKC, lower case, no control
    characters, single spaces, no surrounding punctuation or quotes ("  Anti-Aging  Serum." -> "anti-aging serum")."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)
    return " ".join(text.split()).strip(_PUNCTUATION + " ")


@dataclass(frozen=True)
class ParsedDescriptors:
    """Descriptors of one answer after normalization; `failure` is None when usable, else why not (with `raw`)."""

    descriptors: list[str]
    confidences: list[float]
    failure: str | None
    raw: str
    reasoning: str | None = None  # MLIM answers only
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (descriptor as written, why it was dropped)

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class ParsedLabel:
    label: int | None
    failure: str | None
    raw: str

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class ParsedInterests:
    interests: list[str]
    failure: str | None
    raw: str

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class ParsedCaption:
    caption: str | None
    failure: str | None
    raw: str

    @property
    def ok(self) -> bool:
        return self.failure is None


def _answer(result: GenerationResult | str) -> tuple[str, str | None]:
    """(raw text, failure of the generation itself or None)."""
    if isinstance(result, str):
        return result, None if result.strip() else "empty answer"
    if result.finish_reason == "error":
        return result.text, f"backend error: {result.error or 'no message'}"
    if result.finish_reason == "length":
        return result.text, "cut off at the token limit (finish_reason 'length'): raise max_new_tokens"
    if not result.text.strip():
        return result.text, "empty answer"
    return result.text, None


def _validate(model: type[_Strict], raw: str) -> tuple[_Strict | None, str | None]:
    """Strict JSON parse of `raw` (optionally inside one ``` fence) into `model`: (value, None) or (None, why)."""
    text = raw.strip()
    if fenced := _FENCE.match(text):
        text = fenced.group(1).strip()
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"malformed JSON ({err.msg} at line {err.lineno} column {err.colno})"
    try:
        return model.model_validate_json(text), None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        return None, f"does not match the {model.__name__} schema: {problems}"


def parse_descriptors(
    result: GenerationResult | str,
    *,
    examples: Collection[str] = (),
    reasoning: bool = False,
) -> ParsedDescriptors:
    """Parse a DCIM answer (`reasoning=True`: an MLIM answer with a "reasoning" field first).

    Descriptors are normalized (`normalize_descriptor`); empty, over-long and punctuation-only ones, repeats (the
    first is kept), copies of the prompt's few-shot `examples` and those beyond `MAX_DESCRIPTORS` are dropped and
    listed in `dropped`. A confidence outside [0, 1] fails the answer; so does an answer left with no descriptor
    (never an empty success).
    """
    raw, failure = _answer(result)
    if failure:
        return ParsedDescriptors([], [], failure, raw)
    value, failure = _validate(ReasonedDescriptors if reasoning else Descriptors, raw)
    if value is None:
        return ParsedDescriptors([], [], failure, raw)
    copies = {normalize_descriptor(e) for e in examples}
    kept: dict[str, float] = {}
    dropped: list[tuple[str, str]] = []
    for item in value.descriptors:
        text = normalize_descriptor(item.descriptor)
        if not text:
            dropped.append((item.descriptor, "empty or punctuation only"))
        elif len(text) > MAX_DESCRIPTOR_CHARS:
            dropped.append((item.descriptor, f"longer than {MAX_DESCRIPTOR_CHARS} characters"))
        elif text in copies:
            dropped.append((item.descriptor, "copy of a prompt example"))
        elif text in kept:
            dropped.append((item.descriptor, "duplicate"))
        elif len(kept) == MAX_DESCRIPTORS:
            dropped.append((item.descriptor, f"beyond the first {MAX_DESCRIPTORS} descriptors"))
        else:
            kept[text] = item.confidence
    why_none = f"no descriptor left after normalization (dropped: {dropped})" if not kept else None
    return ParsedDescriptors(
        descriptors=list(kept),
        confidences=list(kept.values()),
        failure=why_none,
        raw=raw,
        reasoning=getattr(value, "reasoning", None),
        dropped=dropped,
    )


def parse_label(result: GenerationResult | str) -> ParsedLabel:
    """Parse a judge answer `{"label": 0|1}`."""
    raw, failure = _answer(result)
    if failure:
        return ParsedLabel(None, failure, raw)
    value, failure = _validate(JudgeLabel, raw)
    return ParsedLabel(None if value is None else value.label, failure, raw)


def parse_interests(result: GenerationResult | str) -> ParsedInterests:
    """Parse a user-interest answer; interests are normalized and de-duplicated like descriptors."""
    raw, failure = _answer(result)
    if failure:
        return ParsedInterests([], failure, raw)
    value, failure = _validate(UserInterests, raw)
    if value is None:
        return ParsedInterests([], failure, raw)
    interests = list(dict.fromkeys(t for t in map(normalize_descriptor, value.interests) if t))
    return ParsedInterests(interests, None if interests else "no interest left after normalization", raw)


def parse_caption(result: GenerationResult | str) -> ParsedCaption:
    """A caption is plain text: whitespace collapsed; empty or cut-off answers are failures (raw text kept)."""
    raw, failure = _answer(result)
    return ParsedCaption(None if failure else " ".join(raw.split()), failure, raw)
