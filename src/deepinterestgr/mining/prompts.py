"""Editable prompt templates for interest mining, turned into `GenerationRequest`s.

Tasks (DESIGN.md): CMSA recommendation-oriented image caption; DCIM ordered item-side intent descriptors with
confidences (strict JSON, two-example few-shot); MLIM chain-of-thought variant (a "reasoning" field before the
same descriptors, so the answer stays one JSON object); MLIM user-side interests from a history; the QARM / RLDI
0/1 descriptor judge.

Prompts are short (prompt length is the main cost on CPU) and put the long shared part (system instructions, then
the few-shot turns) first and the item last, so every request of a task starts with the same tokens and a backend
can compute their keys/values once. Override any field: `PromptTemplates(dcim_system="...")` or
`dataclasses.replace(DEFAULT_TEMPLATES, judge_user="...")`; placeholders are checked when the templates are made.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.mining.backends import GenerationRequest
from deepinterestgr.mining.schema import (
    Descriptors,
    JudgeLabel,
    ReasonedDescriptors,
    UserInterests,
    json_schema,
)


@dataclass(frozen=True)
class FewShotExample:
    """One worked DCIM/MLIM example: the item text as the prompt shows it and the answer it should get.

    Examples are deliberately unlike real catalogue items; their descriptors are dropped from answers that copy
    them (`PromptTemplates.example_descriptors`).
    """

    item: str
    descriptors: tuple[tuple[str, float], ...]
    reasoning: str

    def answer(self, *, reasoning: bool) -> str:
        """The example's answer in the exact JSON layout constrained decoding produces (", " and ": ")."""
        payload: dict = {"reasoning": self.reasoning} if reasoning else {}
        payload["descriptors"] = [{"descriptor": d, "confidence": c} for d, c in self.descriptors]
        return json.dumps(payload, ensure_ascii=False)


DEFAULT_EXAMPLES = (
    FewShotExample(
        item="Title: Insulated steel water bottle, 750 ml\nBrand: Example Outdoor Co.\n"
        "Categories: Sports & Outdoors > Hydration",
        descriptors=(
            ("keeps drinks cold on long hikes", 0.9),
            ("reusable instead of plastic bottles", 0.7),
            ("fits a bike bottle cage", 0.4),
        ),
        reasoning="An insulated bottle for outdoor trips: cold drinks and reuse matter most.",
    ),
    FewShotExample(
        item="Brand: Example Home\nCategories: Office Products > Lighting > Desk Lamps",
        descriptors=(("bright light for late-night reading", 0.8), ("saves space on a small desk", 0.6)),
        reasoning="A desk lamp: people buy it to see well while working in a small space.",
    ),
)

# placeholders each template may use
_PLACEHOLDERS = {
    "caption": {"item"},
    "item_user": {"item"},
    "interests_user": {"history"},
    "judge_user": {"item", "descriptor"},
}


@dataclass(frozen=True)
class PromptTemplates:
    """Every prompt text of the miner and judge; `{item}` is the item as `item_text` renders it."""

    caption: str = (
        "Describe this product photo for a shopping recommender: what it is, its look (color, material, style) "
        "and who would use it. One or two sentences.\n{item}"
    )
    dcim_system: str = (
        "List why a shopper would want this product: short intent descriptors (need, use, benefit, occasion), "
        "most important first, each with a confidence from 0 to 1. Use only the facts given; do not just repeat "
        "category names. Answer with JSON only."
    )
    mlim_system: str = (
        "Think briefly about who buys this product and why, then list short intent descriptors (need, use, "
        "benefit, occasion), most important first, each with a confidence from 0 to 1. Use only the facts given. "
        "Answer with JSON only: the reasoning first, then the descriptors."
    )
    item_user: str = "{item}"
    examples: tuple[FewShotExample, ...] = DEFAULT_EXAMPLES
    interests_system: str = (
        "From a shopper's purchases (oldest first), infer their lasting interests: up to 5 short phrases, most "
        'important first. Answer with JSON only, as {"interests": ["..."]}.'
    )
    interests_user: str = "{history}"
    judge_system: str = (
        "Is the descriptor specific, actionable and grounded in this product? "
        'Answer with JSON only: {"label": 1} for yes, {"label": 0} for no.'
    )
    judge_user: str = "{item}\nDescriptor: {descriptor}"
    max_description_chars: int = 300  # descriptions are cut here: prompt length is the main cost
    max_history: int = 10  # most recent items shown for user interests
    caption_max_new_tokens: int = 96
    descriptors_max_new_tokens: int = 192
    reasoning_max_new_tokens: int = 320
    interests_max_new_tokens: int = 160
    judge_max_new_tokens: int = 12

    def __post_init__(self) -> None:
        for name, allowed in _PLACEHOLDERS.items():
            used = {f for _, f, _, _ in string.Formatter().parse(getattr(self, name)) if f is not None}
            if unknown := used - allowed:
                raise ConfigError(
                    f"PromptTemplates.{name}: unknown placeholder(s) {sorted(unknown)} in {getattr(self, name)!r}; "
                    f"allowed: {sorted(allowed)} (write literal braces as {{{{ and }}}})"
                )
        for f in fields(self):
            if f.name.endswith("max_new_tokens") and getattr(self, f.name) < 1:
                raise ConfigError(f"PromptTemplates.{f.name} must be >= 1, got {getattr(self, f.name)}")
        if len(self.examples) == 0:
            raise ConfigError("PromptTemplates.examples: DCIM needs at least one few-shot example")

    # ----- rendering -----
    def item_text(self, item: Mapping) -> str:
        """The item's known facts, one per line (title, brand, categories, description, caption); absent ones are
        left out rather than shown empty."""
        lines = []
        if title := _clean(item.get("title")):
            lines.append(f"Title: {title}")
        if brand := _clean(item.get("brand")):
            lines.append(f"Brand: {brand}")
        if categories := [c for c in (_clean(c) for c in item.get("categories") or ()) if c]:
            lines.append(f"Categories: {' > '.join(categories)}")
        if description := _clean(item.get("description")):
            if len(description) > self.max_description_chars:
                description = description[: self.max_description_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(f"Description: {description}")
        if caption := _clean(item.get("caption")):
            lines.append(f"Photo: {caption}")
        return "\n".join(lines)

    def example_descriptors(self) -> list[str]:
        """The few-shot examples' descriptors: answers that copy them are dropped by `parse_descriptors`."""
        return [d for example in self.examples for d, _ in example.descriptors]

    # ----- requests -----
    def caption_request(self, item: Mapping) -> GenerationRequest:
        """CMSA: a recommendation-oriented caption of the item's image (for an image-text-to-text model)."""
        image = item.get("image")
        if not image:
            raise DataError(
                f"item {item.get('item_id')!r}: field 'image' is empty; caption only items with an image "
                "(filter the items dataset on `image`)"
            )
        user = self.caption.format(item=self.item_text(item)).strip()
        return GenerationRequest(
            messages=({"role": "user", "content": user},),
            max_new_tokens=self.caption_max_new_tokens,
            images=(str(image),),
        )

    def descriptors_request(self, item: Mapping, *, reasoning: bool = False) -> GenerationRequest:
        """DCIM (`reasoning=False`) or MLIM chain of thought (`reasoning=True`): JSON descriptors of one item."""
        system = self.mlim_system if reasoning else self.dcim_system
        messages = [{"role": "system", "content": system}]
        for example in self.examples:
            messages.append({"role": "user", "content": self.item_user.format(item=example.item)})
            messages.append({"role": "assistant", "content": example.answer(reasoning=reasoning)})
        messages.append({"role": "user", "content": self.item_user.format(item=self._require_text(item))})
        return GenerationRequest(
            messages=tuple(messages),
            json_schema=json_schema(ReasonedDescriptors if reasoning else Descriptors),
            max_new_tokens=self.reasoning_max_new_tokens if reasoning else self.descriptors_max_new_tokens,
        )

    def interests_request(self, history: Sequence[Mapping]) -> GenerationRequest:
        """MLIM user side: interests behind a history of items (oldest first; the last `max_history` are shown)."""
        shown = list(history)[-self.max_history :]
        if not shown:
            raise DataError("user history is empty: user interests need at least one item")
        lines = [f"{n}. " + self.item_text(item).replace("\n", "; ") for n, item in enumerate(shown, start=1)]
        return GenerationRequest(
            messages=(
                {"role": "system", "content": self.interests_system},
                {"role": "user", "content": self.interests_user.format(history="\n".join(lines))},
            ),
            json_schema=json_schema(UserInterests),
            max_new_tokens=self.interests_max_new_tokens,
        )

    def judge_request(self, item: Mapping, descriptor: str) -> GenerationRequest:
        """QARM / RLDI: is `descriptor` specific, actionable and grounded in `item`? Answer {"label": 0|1}."""
        return GenerationRequest(
            messages=(
                {"role": "system", "content": self.judge_system},
                {
                    "role": "user",
                    "content": self.judge_user.format(item=self._require_text(item), descriptor=descriptor),
                },
            ),
            json_schema=json_schema(JudgeLabel),
            max_new_tokens=self.judge_max_new_tokens,
        )

    def _require_text(self, item: Mapping) -> str:
        text = self.item_text(item)
        if not text:
            raise DataError(
                f"item {item.get('item_id')!r} has no title, brand, categories, description or caption: "
                "nothing to mine from; drop it or fill one of these fields"
            )
        return text


def _clean(value: object) -> str:
    """One line of text from a field value (None and blanks become "")."""
    return " ".join(str(value).split()) if value is not None else ""


DEFAULT_TEMPLATES = PromptTemplates()
