"""What the Space shows, loaded once: a recommender, its catalogue (text + mined enrichment) and the test users.

Two sources, chosen by environment variables only (the page never names a file):
- `DEEPINTERESTGR_RUN`: the output folder of `deepinterestgr pipeline` (prepared/, sid/, sft/ and grpo/);
  `DEEPINTERESTGR_STAGE` picks the model (`grpo` when that stage is done, else `sft`).
- `DEEPINTERESTGR_MODEL` + `DEEPINTERESTGR_DATASET`: a recommender and an items/sequences dataset, each a Hub id or
  a local folder (`deepinterestgr push` layout: dataset configs "items" and "sequences"), pinned with
  `DEEPINTERESTGR_MODEL_REVISION` / `DEEPINTERESTGR_DATASET_REVISION`. The test split is rebuilt leave-last-out.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from deepinterestgr.artifacts import load_items, stage_done
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.splits import leave_last_out
from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.recommender.model import GenerativeRecommender

ENV_RUN = "DEEPINTERESTGR_RUN"
ENV_STAGE = "DEEPINTERESTGR_STAGE"
ENV_MODEL = "DEEPINTERESTGR_MODEL"
ENV_DATASET = "DEEPINTERESTGR_DATASET"
ENV_MODEL_REVISION = "DEEPINTERESTGR_MODEL_REVISION"
ENV_DATASET_REVISION = "DEEPINTERESTGR_DATASET_REVISION"

MISSING = "—"  # shown where a value does not exist (e.g. descriptors when mining did not run)
MAX_ITEM_TEXT = 160  # characters of item text in tables
# only what the Space shows: embeddings and training text stay on disk
ITEM_COLUMNS = (
    "item_id",
    "title",
    "brand",
    "categories",
    "description",
    "caption",
    "descriptors",
    "descriptor_confidences",
    "descriptor_labels",
    "quality",
)


class InputError(DataError):
    """A value typed or picked on the page that the Space refuses; the message says what to change."""


@dataclass(frozen=True)
class ItemInfo:
    """One catalogue item as the Space shows it; enrichment fields are None when mining/judging did not run."""

    item_id: str
    text: str  # one line: title · brand · categories
    title: str | None = None
    brand: str | None = None
    categories: tuple[str, ...] = ()
    description: str | None = None
    caption: str | None = None
    descriptors: tuple[str, ...] | None = None
    confidences: tuple[float, ...] | None = None
    labels: tuple[int, ...] | None = None
    quality: float | None = None

    @property
    def search_text(self) -> str:
        """Lower-case brand, categories and title: what the item search matches."""
        return html.unescape(" ".join(p for p in (self.title, self.brand, *self.categories) if p)).lower()

    def facts(self) -> dict:
        """The item's text fields, as the mining prompts read them."""
        return {
            "item_id": self.item_id,
            "title": self.title,
            "brand": self.brand,
            "categories": list(self.categories),
            "description": self.description,
            "caption": self.caption,
        }


@dataclass(frozen=True)
class HeldOutUser:
    user_id: str
    history: tuple[str, ...]  # oldest first
    target: str  # the held-out next item


@dataclass
class SpaceData:
    """Everything the tabs read. `items` covers every item of the recommender's SID map."""

    recommender: GenerativeRecommender
    items: dict[str, ItemInfo]
    users: dict[str, HeldOutUser]
    source: str  # where it came from, for the page header
    columns: frozenset[str] = field(default_factory=frozenset)  # enrichment columns the items table had

    @property
    def sid_map(self):
        return self.recommender.sid_map

    @property
    def max_history(self) -> int:
        return self.recommender.max_history

    @property
    def has_descriptors(self) -> bool:
        return "descriptors" in self.columns

    @property
    def has_quality(self) -> bool:
        return "quality" in self.columns


def one_line(*parts: str | None, limit: int = MAX_ITEM_TEXT) -> str:
    """Non-empty parts joined with " · ", HTML entities decoded (`Wet &#39;n Wild`), whitespace collapsed, cut at
    `limit` characters."""
    text = " · ".join(" ".join(html.unescape(str(p)).split()) for p in parts if p and str(p).strip())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _optional_tuple(value, cast) -> tuple | None:
    return None if value is None else tuple(cast(v) for v in value)


def item_info(row: Mapping) -> ItemInfo:
    """An `ItemInfo` from one row of an items table (any subset of the DESIGN.md item columns)."""
    categories = tuple(c for c in row.get("categories") or () if c)
    quality = row.get("quality")
    return ItemInfo(
        item_id=str(row["item_id"]),
        text=one_line(row.get("title"), row.get("brand"), " > ".join(categories)) or str(row["item_id"]),
        title=row.get("title") or None,
        brand=row.get("brand") or None,
        categories=categories,
        description=row.get("description") or None,
        caption=row.get("caption") or None,
        descriptors=_optional_tuple(row["descriptors"] or (), str) if "descriptors" in row else None,
        confidences=_optional_tuple(row.get("descriptor_confidences"), float),
        labels=_optional_tuple(row.get("descriptor_labels"), int),
        quality=None if quality is None else float(quality),
    )


def catalogue(items: Dataset, recommender: GenerativeRecommender) -> tuple[dict[str, ItemInfo], frozenset[str]]:
    """`ItemInfo` of every item in the recommender's SID map (items missing from the table show their id only),
    and which enrichment columns the table has."""
    if "item_id" not in items.column_names:
        raise DataError(f"items table has no `item_id` column (columns: {', '.join(items.column_names)})")
    kept = [c for c in ITEM_COLUMNS if c in items.column_names]
    by_id = {row["item_id"]: item_info(row) for row in items.select_columns(kept)}
    sid_map = recommender.sid_map
    missing = [i for i in sid_map.item_ids if i not in by_id]
    if len(missing) == len(sid_map):
        raise DataError(
            f"none of the recommender's {len(sid_map):,} items is in the items table ({len(items):,} rows, e.g. "
            f"{items[0]['item_id']!r} vs {sid_map.item_ids[0]!r}): the model and the dataset do not belong together"
        )
    infos = {i: by_id.get(i) or ItemInfo(item_id=i, text=i) for i in sid_map.item_ids}
    return infos, frozenset(kept)


def held_out_users(rows: Dataset, recommender: GenerativeRecommender) -> dict[str, HeldOutUser]:
    """Test rows (`user_id`, `history`, `target`) whose items the recommender knows, history cut to its window."""
    sid_map = recommender.sid_map
    users = {}
    for user, history, target in zip(rows["user_id"], rows["history"], rows["target"], strict=True):
        if history and target in sid_map and all(i in sid_map for i in history):
            users[user] = HeldOutUser(user, tuple(history[-recommender.max_history :]), target)
    return users


def load_run(run: str | os.PathLike, *, stage: str | None = None, device: str | None = None) -> SpaceData:
    """Load a `deepinterestgr pipeline` output folder; `stage` is "sft" or "grpo" (default: the last one done)."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{ENV_RUN}={run}: no such folder; run `deepinterestgr pipeline --config ...` first")
    if stage is None:
        stage = "grpo" if stage_done(run / "grpo") else "sft"
    if stage not in ("sft", "grpo"):
        raise ConfigError(f"{ENV_STAGE}={stage!r}: use sft or grpo")
    if not stage_done(run / stage):
        raise ConfigError(f"{run / stage}: the {stage} stage has not finished; run `deepinterestgr pipeline` on it")
    recommender = GenerativeRecommender.from_pretrained(run / stage, device=device)
    items = load_items(run / "sid", needs=("sid",))
    prepared = PreparedData.load_from_disk(run / "prepared")
    infos, columns = catalogue(items, recommender)
    users = held_out_users(prepared.splits["test"], recommender)
    return SpaceData(recommender, infos, users, f"{run} ({stage})", columns)


def _table(name: str, config: str, revision: str | None) -> Dataset:
    """The one split of a dataset config (a Hub id or local folder), or a clear error."""
    try:
        loaded = load_dataset(name, config, revision=revision)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(
            f"{ENV_DATASET}={name}: cannot load its {config!r} config ({' '.join(str(err).split())[:300]}); "
            "push it with `deepinterestgr push`, which writes the configs 'items' and 'sequences'"
        ) from None
    if isinstance(loaded, DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        return loaded[split]
    return loaded


def _at(name: str, revision: str | None) -> str:
    return f"{name}@{revision}" if revision else name


def load_hub(
    model: str,
    dataset: str,
    *,
    model_revision: str | None = None,
    dataset_revision: str | None = None,
    device: str | None = None,
) -> SpaceData:
    """Load a pushed recommender and its items/sequences dataset (Hub ids or local folders)."""
    recommender = GenerativeRecommender.from_pretrained(model, revision=model_revision, device=device)
    items = _table(dataset, "items", dataset_revision)
    sequences = _table(dataset, "sequences", dataset_revision)
    missing = {"user_id", "item_ids"} - set(sequences.column_names)
    if missing:
        raise DataError(f"{ENV_DATASET}={dataset}: the 'sequences' config lacks column(s) {', '.join(sorted(missing))}")
    test = leave_last_out(sequences.select_columns(["user_id", "item_ids"]))["test"]
    infos, columns = catalogue(items, recommender)
    source = f"{_at(model, model_revision)} + {_at(dataset, dataset_revision)}"
    return SpaceData(recommender, infos, held_out_users(test, recommender), source, columns)


def load_from_env(environ: Mapping[str, str] | None = None) -> SpaceData:
    """The `SpaceData` the environment variables name (see the module doc)."""
    env = os.environ if environ is None else environ
    run, model, dataset = env.get(ENV_RUN), env.get(ENV_MODEL), env.get(ENV_DATASET)
    if run and (model or dataset):
        raise ConfigError(f"set either {ENV_RUN} or {ENV_MODEL} + {ENV_DATASET}, not both")
    if run:
        return load_run(run, stage=env.get(ENV_STAGE) or None)
    if model and dataset:
        return load_hub(
            model,
            dataset,
            model_revision=env.get(ENV_MODEL_REVISION) or None,
            dataset_revision=env.get(ENV_DATASET_REVISION) or None,
        )
    raise ConfigError(
        f"nothing to show: set {ENV_RUN} to a `deepinterestgr pipeline` output folder (e.g. runs/quickstart), or "
        f"{ENV_MODEL} and {ENV_DATASET} to a pushed recommender and its dataset (Hub ids or folders)"
        + (f"; {ENV_MODEL} is set but {ENV_DATASET} is not" if model and not dataset else "")
        + (f"; {ENV_DATASET} is set but {ENV_MODEL} is not" if dataset and not model else "")
    )
