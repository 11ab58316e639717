"""GRPO rewards for generated SIDs, each a plain TRL reward callable `f(prompts, completions, **columns)`.

Our own code because the rewards are the method. With the weights of `build_rewards` they sum to DeepInterestGR's

    R = 1[exact] + lambda_valid * 1[valid SID] + lambda_pref * LCP(codes) / L + alpha * q_target * 1[exact]

TRL logs every component under its own name. Columns read (per completion, TRL passes the dataset's columns):
`target` (item id), `rollout_rank` (0 = best beam, from the constrained rollouts) and `interests` (the user's
mined interests). Item tables (quality q_i, descriptors and their judge labels) are given when building a reward.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepinterestgr.errors import DataError
from deepinterestgr.sid.semantic_ids import LEVEL_LETTERS, TOKEN_RE, SemanticIDMap

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ParsedSID:
    codes: tuple[int, ...]  # leading codes with the right level letters (a, b, c, then the suffix letter)
    item: str | None  # the catalogue item whose SID this is exactly, else None


def completion_text(completion: str | list[dict]) -> str:
    """Text of a completion: the string itself, or the last message's content for conversational data."""
    return completion if isinstance(completion, str) else str(completion[-1]["content"])


def parse_sid(text: str, sid_map: SemanticIDMap) -> ParsedSID:
    """Codes of a generated SID (whitespace between tokens is ignored) and the item it names, if any."""
    compact = "".join(text.split())
    codes = []
    for level, (letter, code) in enumerate(TOKEN_RE.findall(compact)):
        if level >= len(LEVEL_LETTERS) or letter != LEVEL_LETTERS[level]:
            break
        codes.append(int(code))
    return ParsedSID(tuple(codes), sid_map.item_for_tokens(compact))


class SIDReward:
    """Base of the rewards: checks the columns it needs, parses completions, and refuses non-finite values."""

    name = "sid_reward"
    needs: tuple[str, ...] = ("target",)

    def __init__(self, sid_map: SemanticIDMap):
        self.sid_map = sid_map
        self.__name__ = self.name  # TRL logs a reward under its function's __name__

    def __call__(self, prompts: list, completions: list, **columns) -> list[float]:
        missing = [c for c in self.needs if c not in columns]
        if missing:
            raise DataError(
                f"reward {self.name!r} needs the column(s) {', '.join(missing)} in the GRPO dataset "
                f"(has: {', '.join(sorted(columns)) or 'none'}); build it with `deepinterestgr.rl.grpo_dataset`"
            )
        if "target" in self.needs:
            unknown = next((t for t in columns["target"] if t not in self.sid_map), None)
            if unknown is not None:
                raise DataError(f"reward {self.name!r}: target item {unknown!r} is not in the semantic-ID map")
        parsed = [parse_sid(completion_text(c), self.sid_map) for c in completions]
        values = [float(v) for v in self.score(parsed, columns)]
        bad = next((n for n, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise DataError(f"reward {self.name!r} is {values[bad]} for completion {bad} ({completions[bad]!r})")
        return values

    def score(self, parsed: list[ParsedSID], columns: Mapping[str, Sequence]) -> list[float]:
        raise NotImplementedError


class ExactMatchReward(SIDReward):
    """1 when the generated SID decodes to the target item."""

    name = "exact"

    def score(self, parsed, columns):
        return [p.item is not None and p.item == t for p, t in zip(parsed, columns["target"], strict=True)]


class ValidityReward(SIDReward):
    """1 when the generated SID decodes to any catalogue item."""

    name = "valid"
    needs = ()

    def score(self, parsed, columns):
        return [p.item is not None for p in parsed]


class PrefixReward(SIDReward):
    """Longest common prefix with the target's codes over the L quantizer levels, divided by L; the collision
    suffix is excluded (it orders colliding items, it carries no meaning)."""

    name = "prefix"

    def score(self, parsed, columns):
        levels = self.sid_map.num_levels
        out = []
        for p, target in zip(parsed, columns["target"], strict=True):
            want = self.sid_map.codes_of(target)[:levels]
            common = 0
            for got, expected in zip(p.codes[:levels], want, strict=False):
                if got != expected:
                    break
                common += 1
            out.append(common / levels)
        return out


class RankReward(SIDReward):
    """Rank-aware penalty over a prompt's group, as MiniOneRec: a wrong item generated at (1-based) rank r costs
    (1 / log2(r + 1)) / sum_j (1 / log2(j + 1)) over the group, so confident mistakes cost most; the target and
    invalid SIDs cost 0. Needs `rollout_rank` from the constrained beam rollouts."""

    name = "rank"
    needs = ("target", "rollout_rank")

    def __init__(self, sid_map: SemanticIDMap, *, group_size: int):
        super().__init__(sid_map)
        self.norm = sum(1.0 / math.log2(j + 2) for j in range(group_size))

    def score(self, parsed, columns):
        return [
            -(1.0 / math.log2(int(r) + 2)) / self.norm if p.item is not None and p.item != t else 0.0
            for p, t, r in zip(parsed, columns["target"], columns["rollout_rank"], strict=True)
        ]


class QualityBonusReward(SIDReward):
    """QARM bonus `alpha * q * 1[exact]`: the target's quality, paid only when the SID decodes to the target
    (relevance-gated). `gated=False` is the ablation that pays `alpha * q` of whatever valid item was generated."""

    def __init__(self, sid_map: SemanticIDMap, quality: Mapping[str, float], *, alpha: float = 0.5, gated: bool = True):
        self.name = "qarm_bonus" if gated else "ungated_bonus"
        super().__init__(sid_map)
        bad = next(((i, q) for i, q in quality.items() if not (isinstance(q, int | float) and 0.0 <= q <= 1.0)), None)
        if bad is not None:
            raise DataError(f"item {bad[0]!r}: quality {bad[1]!r} is outside [0, 1]; re-run `deepinterestgr judge`")
        missing = next((i for i in sid_map.item_ids if i not in quality), None)
        if missing is not None:
            raise DataError(f"item {missing!r} of the semantic-ID map has no quality; judge every catalogue item")
        self.quality, self.alpha, self.gated = quality, alpha, gated
        self.needs = ("target",) if gated else ()

    def score(self, parsed, columns):
        if not self.gated:
            return [self.alpha * self.quality[p.item] if p.item is not None else 0.0 for p in parsed]
        return [
            self.alpha * self.quality[t] if p.item == t else 0.0 for p, t in zip(parsed, columns["target"], strict=True)
        ]


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


class InterestReward(SIDReward):
    """v1 interest-aware reward: how well the generated item's positively judged descriptors cover the user's
    mined interests: the mean over interests of the best similarity to any such descriptor (0 when either side
    is empty). Similarity is word-set Jaccard, or the cosine of `encoder` embeddings when one is given."""

    name = "interest"
    needs = ("interests",)

    def __init__(
        self,
        sid_map: SemanticIDMap,
        descriptors: Mapping[str, Sequence[str]],
        labels: Mapping[str, Sequence[int]],
        *,
        encoder: Callable[[list[str]], np.ndarray] | None = None,
    ):
        super().__init__(sid_map)
        self.positive: dict[str, list[str]] = {}
        for item, texts in descriptors.items():
            item_labels = labels.get(item, [])
            if len(item_labels) != len(texts):
                raise DataError(
                    f"item {item!r}: {len(texts)} descriptors but {len(item_labels)} labels; "
                    "run `deepinterestgr judge` on these items"
                )
            self.positive[item] = [d for d, y in zip(texts, item_labels, strict=True) if y == 1]
        self.encoder = encoder

    def similarity(self, interests: list[str], texts: list[str]) -> float:
        if not interests or not texts:
            return 0.0
        if self.encoder is not None:
            a, b = self.encoder(interests), self.encoder(texts)
            a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)
            b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(min=1e-12)
            return float(np.clip(a @ b.T, 0.0, 1.0).max(axis=1).mean())
        sets = [_words(t) for t in texts]
        best = [max((len(w & s) / len(w | s) if w | s else 0.0) for s in sets) for w in map(_words, interests)]
        return sum(best) / len(best)

    def score(self, parsed, columns):
        return [
            self.similarity(list(interests or []), self.positive.get(p.item, [])) if p.item is not None else 0.0
            for p, interests in zip(parsed, columns["interests"], strict=True)
        ]
