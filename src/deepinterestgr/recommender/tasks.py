"""SFT tasks as prompt/completion datasets (TRL's format), mixable by weights.

- `next_item`: history SIDs -> next SID, one example per position of each training sequence (sliding window).
- `sequence`: one example per training sequence (per window of `max_history + 1` items for longer ones), prompt =
  first item, completion = all later items' SIDs, so the completion-only loss makes every position predict the
  next item (as SASRec/HSTU train) in ~1/10 of the tokens of the sliding windows.
- `item2sid` / `sid2item`: align item text with its SID (needs a tokenizer that knows words).
- `interest_next_item`: history plus the history items' mined descriptors (when the items have `descriptors`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from datasets import Dataset, concatenate_datasets

from deepinterestgr.embedding.text import item_text
from deepinterestgr.errors import ConfigError
from deepinterestgr.sid.semantic_ids import SemanticIDMap

TASKS = ("next_item", "sequence", "item2sid", "sid2item", "interest_next_item")


@dataclass
class PromptTemplates:
    """Short, configurable prompts; `{history}` is the concatenated SIDs of the history items."""

    history: str = "{history}"
    item2sid: str = "Item: {text}\nSID: "
    sid2item: str = "SID: {sid}\nItem: "
    interests: str = "Interests: {interests}\n{history}"

    def render_history(self, sid_map: SemanticIDMap, items: Sequence[str]) -> str:
        return self.history.format(history="".join(sid_map.tokens_of(i) for i in items))


def next_item_examples(
    sequences: Sequence[Sequence[str]], sid_map: SemanticIDMap, *, max_history: int, templates: PromptTemplates
) -> dict[str, list[str]]:
    prompts, completions = [], []
    for seq in sequences:
        for t in range(1, len(seq)):
            prompts.append(templates.render_history(sid_map, seq[max(0, t - max_history) : t]))
            completions.append(sid_map.tokens_of(seq[t]))
    return {"prompt": prompts, "completion": completions}


def sequence_examples(
    sequences: Sequence[Sequence[str]], sid_map: SemanticIDMap, *, max_history: int, templates: PromptTemplates
) -> dict[str, list[str]]:
    """One example per window of `max_history + 1` items: a sequence longer than that is cut into windows that end
    `max_history` items apart, so every item after the first is a target exactly once (keeping only the last window
    would drop ~11% of Beauty's training transitions, all of them from its most active users)."""
    prompts, completions = [], []
    for seq in sequences:
        for end in range(len(seq), 1, -max_history):
            window = seq[max(0, end - max_history - 1) : end]
            prompts.append(templates.render_history(sid_map, window[:1]))
            completions.append("".join(sid_map.tokens_of(i) for i in window[1:]))
    return {"prompt": prompts, "completion": completions}


def alignment_examples(
    items: Sequence[Mapping], sid_map: SemanticIDMap, *, reverse: bool, templates: PromptTemplates
) -> dict[str, list[str]]:
    prompts, completions = [], []
    for row in items:
        text, sid = item_text(row), sid_map.tokens_of(row["item_id"])
        if not text:
            continue
        if reverse:
            prompts.append(templates.sid2item.format(sid=sid))
            completions.append(text)
        else:
            prompts.append(templates.item2sid.format(text=text))
            completions.append(sid)
    return {"prompt": prompts, "completion": completions}


def interest_examples(
    sequences: Sequence[Sequence[str]],
    sid_map: SemanticIDMap,
    descriptors: Mapping[str, Sequence[str]],
    *,
    max_history: int,
    templates: PromptTemplates,
    max_interests: int = 8,
) -> dict[str, list[str]]:
    prompts, completions = [], []
    for seq in sequences:
        for t in range(1, len(seq)):
            history = seq[max(0, t - max_history) : t]
            interests = list(dict.fromkeys(d for i in reversed(history) for d in descriptors.get(i, [])))
            prompts.append(
                templates.interests.format(
                    interests=", ".join(interests[:max_interests]),
                    history=templates.render_history(sid_map, history),
                )
            )
            completions.append(sid_map.tokens_of(seq[t]))
    return {"prompt": prompts, "completion": completions}


def build_sft_dataset(
    train_sequences: Sequence[Sequence[str]],
    items: Dataset,
    sid_map: SemanticIDMap,
    *,
    tasks: Mapping[str, float],
    max_history: int = 20,
    templates: PromptTemplates | None = None,
    seed: int = 42,
) -> Dataset:
    """Mix of the named tasks. A weight w keeps each example of a task int(w) times plus once more with
    probability frac(w), so 1.0 = all examples once, 0.3 = a random 30%, 2.0 = twice. Shuffled."""
    templates = templates or PromptTemplates()
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"unknown SFT task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    if any(w < 0 for w in tasks.values()) or not any(w > 0 for w in tasks.values()):
        raise ConfigError("SFT task weights must be >= 0 with at least one > 0")
    rng = random.Random(seed)
    parts = []
    for task, weight in tasks.items():
        if weight <= 0:
            continue
        if task == "next_item":
            columns = next_item_examples(train_sequences, sid_map, max_history=max_history, templates=templates)
        elif task == "sequence":
            columns = sequence_examples(train_sequences, sid_map, max_history=max_history, templates=templates)
        elif task in ("item2sid", "sid2item"):
            columns = alignment_examples(items, sid_map, reverse=task == "sid2item", templates=templates)
        else:
            if "descriptors" not in items.column_names:
                raise ConfigError("task interest_next_item needs a `descriptors` column: run `deepinterestgr mine`")
            descriptors = dict(zip(items["item_id"], items["descriptors"], strict=True))
            columns = interest_examples(
                train_sequences, sid_map, descriptors, max_history=max_history, templates=templates
            )
        n = len(columns["prompt"])
        keep = [i for i in range(n) for _ in range(int(weight) + (rng.random() < weight - int(weight)))]
        parts.append(
            Dataset.from_dict(
                {
                    "prompt": [columns["prompt"][i] for i in keep],
                    "completion": [columns["completion"][i] for i in keep],
                    "task": [task] * len(keep),
                }
            )
        )
    return concatenate_datasets(parts).shuffle(seed=seed)
