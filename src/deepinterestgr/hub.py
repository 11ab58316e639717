"""Hub artifacts: the enriched items + sequences dataset, the RQ-VAE SID tokenizer and the recommender.

Each push is one commit (`HfApi.create_commit`) holding every file of the artifact and a card rendered from the
`hub_cards/` templates (what it is, how it was made, metrics, how to load it, citation). The repo's files become
exactly the artifact's: files of an earlier push that are gone are deleted in the same commit, older versions stay
in the history and load with `revision=`. Tokens come from the usual huggingface_hub places (`HF_TOKEN`,
`hf auth login`) or the `token` argument, and are never printed.

    from deepinterestgr.hub import push_run, load_hub_dataset
    push_run("runs/quickstart", "my-name")              # -> my-name/quickstart-items, -sid-tokenizer, -recommender
    items, sequences = load_hub_dataset("my-name/quickstart-items")
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset, load_dataset, load_from_disk
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    DatasetCardData,
    HfApi,
    ModelCard,
    ModelCardData,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from deepinterestgr.artifacts import MANIFEST, quiet_datasets
from deepinterestgr.errors import DeepInterestGRError

CARDS_DIR = Path(__file__).resolve().parents[2] / "hub_cards"  # top level of a source checkout / editable install
ITEM_COLUMNS = (
    "item_id", "title", "description", "brand", "categories", "image", "caption", "descriptors",
    "descriptor_confidences", "descriptor_labels", "quality", "sid",
)  # fmt: skip
SEQUENCE_COLUMNS = ("user_id", "item_ids", "timestamps")
METRIC_NAMES = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
REPO_SUFFIXES = {"dataset": "-items", "tokenizer": "-sid-tokenizer", "recommender": "-recommender"}
MAX_SHARD_BYTES = 500 * 1024 * 1024
SKIPPED_FILES = {MANIFEST, "README.md", ".gitattributes"}
LICENSE = {
    "license": "other",
    "license_name": "amazon-reviews-research-use",
    "license_link": "https://cseweb.ucsd.edu/~jmcauley/datasets.html",
}
DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"  # what the embed stage uses when none is set
TAGS = ["deepinterestgr", "recommendation", "generative-recommendation", "semantic-ids"]
COLUMN_HELP = {
    "item_id": "Item id (the Amazon ASIN for Amazon data).",
    "title": "Item title.",
    "description": "Item description.",
    "brand": "Brand, when known.",
    "categories": "Category path, most general first.",
    "image": "Image URL or file name, when known.",
    "embedding_text": "The enriched item text that was embedded (item fields + mined descriptors).",
    "caption": "Recommendation-oriented caption written by a VLM (CMSA).",
    "descriptors": "Item-side intent descriptors mined by LLMs, most salient first (DCIM / MLIM).",
    "descriptor_confidences": "The miner's confidence in each descriptor, 0..1.",
    "descriptor_sources": "Which model mined each descriptor (MLIM merges several).",
    "descriptor_scores": "Grounding score of each descriptor (judge stage).",
    "descriptor_labels": "Judge label of each descriptor: 1 specific, actionable and grounded, else 0 (QARM / RLDI).",
    "quality": "Item quality q = sum(c_k * y_k) / sum(c_k) over its descriptors (QARM).",
    "sid": "Semantic ID: one RQ-VAE code per level, plus a suffix code for items that share all level codes (or for "
    "every item with `suffix: item`).",
    "embedding": "The vector the RQ-VAE quantized.",
    "text_embedding": "Text-encoder embedding of `embedding_text`.",
    "collaborative_embedding": "Item embedding learned from train interactions.",
    "user_id": "User id (the Amazon reviewer id for Amazon data).",
    "item_ids": "The user's items in chronological order.",
    "timestamps": "Unix time of each interaction, aligned with `item_ids`.",
}
STAGE_HELP = {
    "prepare": "Read the source files into items and per-user chronological sequences (k-core when set).",
    "mine": "Deep interest mining: captions (CMSA), intent descriptors with confidences (DCIM / MLIM).",
    "judge": "Descriptor labels 0/1 (QARM / RLDI) and item quality q_i.",
    "embed": "Enriched item text (and, when fused, a collaborative embedding) -> one vector per item.",
    "quantize": "RQ-VAE training, then every item's semantic ID (a suffix code for colliding items, or for all).",
    "sft": "Supervised fine-tuning: generate the SID of a user's next item from their history.",
    "grpo": "GRPO from the SFT model with catalogue-constrained rollouts and the configured rewards.",
}
SOURCES = {
    "p5": ("Amazon Review data (2014), 5-core, as preprocessed by P5 / S3-Rec", "amazon2014"),
    "amazon2014": ("Amazon Review data (2014) dumps", "amazon2014"),
    "lcrec": ("Amazon Review data as preprocessed by LC-Rec / LETTER", "amazon2018"),
    "minionerec": ("Amazon Review data (2018) as preprocessed by MiniOneRec", "amazon2018"),
    "amazon2018": ("Amazon Review data (2018) dumps", "amazon2018"),
    "amazon2023": ("Amazon Reviews'23 dumps", "amazon2023"),
}


class HubError(DeepInterestGRError):
    """A push or pull that cannot go ahead: bad repo id, missing artifact, refused by the Hub."""


@dataclass
class RunRecord:
    """What a pipeline output folder holds: finished stages (their `stage.json`) and evaluation metrics."""

    path: Path
    manifests: dict[str, dict] = field(default_factory=dict)  # folder name -> manifest
    metrics: dict[str, dict] = field(default_factory=dict)  # evaluated stage ("sft", "grpo") -> metrics.json

    @classmethod
    def read(cls, output_dir: str | Path) -> RunRecord:
        """Read the manifests and metrics of a run folder (what `deepinterestgr pipeline` writes)."""
        path = Path(output_dir)
        if not path.is_dir():
            raise HubError(f"{path}: no such run folder; run `deepinterestgr pipeline --config ...` first")
        record = cls(path)
        for manifest in sorted(path.glob(f"*/{MANIFEST}")):
            record.manifests[manifest.parent.name] = _read_json(manifest)
        for metrics in sorted(path.glob("evaluation/*/metrics.json")):
            record.metrics[metrics.parent.name] = check_metrics(_read_json(metrics), metrics)
        return record

    def stage(self, name: str) -> dict | None:
        """Manifest of the stage called `name` (by its `stage` field, else its folder)."""
        for folder, manifest in self.manifests.items():
            if manifest.get("stage") == name or (folder == name and "stage" not in manifest):
                return manifest
        return None

    def source(self) -> dict:
        prepared = self.stage("prepare") or {}
        return prepared.get("source", {})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        message = f"{path}: not valid JSON ({err.msg} at line {err.lineno}); rerun the stage that wrote it"
        raise HubError(message) from None


def check_metrics(metrics: Any, source: str | Path = "metrics") -> dict:
    """The evaluator's metrics.json, checked for the fields the card shows."""
    if not isinstance(metrics, dict):
        raise HubError(f"{source}: expected the JSON object written by `deepinterestgr evaluate`")
    for key in ("split", "runs", "summary"):
        if key not in metrics:
            raise HubError(f"{source}: missing field {key!r}; rerun `deepinterestgr evaluate` to rewrite it")
    for name in METRIC_NAMES:
        value = metrics["summary"].get(name)
        if not isinstance(value, dict) or not isinstance(value.get("mean"), (int, float)):
            raise HubError(f"{source}: summary.{name}.mean is missing or not a number; rerun `deepinterestgr evaluate`")
    if not metrics["runs"] or not all(isinstance(run.get("users"), int) for run in metrics["runs"]):
        raise HubError(f"{source}: runs[].users is missing; rerun `deepinterestgr evaluate`")
    return metrics


# repo ids, tokens and the single commit


def check_repo_id(repo_id: str, what: str = "repo id") -> str:
    """`repo_id` if it is a valid `namespace/name` Hub id, else a `HubError` saying which part is wrong and why."""
    shown = repo_id if len(str(repo_id)) <= 60 else f"{repo_id[:57]}..."
    problem = None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        problem = "it must be `namespace/name` (one '/')"
    else:
        for part, value in zip(("namespace", "name"), repo_id.split("/"), strict=True):
            if not value:
                problem = f"the {part} is empty"
            elif len(value) > 96:
                problem = f"the {part} has {len(value)} characters (at most 96)"
            elif re.search(r"[^A-Za-z0-9._-]", value):
                problem = f"the {part} contains {re.search(r'[^A-Za-z0-9._-]', value).group()!r}"
            elif value[0] in "-." or value[-1] in "-.":
                problem = f"the {part} starts or ends with '-' or '.'"
            elif "--" in value or ".." in value:
                problem = f"the {part} contains '--' or '..'"
            if problem:
                break
        else:
            try:
                validate_repo_id(repo_id)
            except HFValidationError as err:
                problem = str(err).splitlines()[0]
    if problem:
        raise HubError(f"{what} {shown!r} is not a valid Hub repo id: {problem}; use letters, digits, '-', '_', '.'")
    return repo_id


def _api(token: str | None) -> HfApi:
    """An `HfApi` with a token from the argument, `HF_TOKEN` or the saved login; the token is never shown."""
    if token is None and get_token() is None:
        raise HubError("no Hugging Face token found: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return HfApi(token=token)


def _hub_call(what: str, call, *args, **kwargs):
    """Run a huggingface_hub call, turning its HTTP errors into one-line `HubError`s."""
    try:
        return call(*args, **kwargs)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        server = (err.server_message or "").strip().splitlines()
        detail = f": {server[0]}" if server else ""
        if status == 401:
            fix = "the token was refused: set HF_TOKEN to a valid write token or run `hf auth login`"
        elif status == 403:
            fix = "the token may not write there: pick a namespace you own (--namespace) or a token with write access"
        elif status == 404:
            fix = "the repo or revision does not exist, or the token cannot see it"
        else:
            fix = "see the server's message"
        raise HubError(f"{what} failed (HTTP {status}{detail}); {fix}") from None
    except ValueError as err:  # e.g. the Hub rejected the card's YAML metadata
        message = " ".join(str(err).split())
        raise HubError(f"{what} failed: {message}") from None


def commit_files(
    repo_id: str,
    repo_type: str,
    files: Mapping[str, str | Path | bytes],
    *,
    commit_message: str,
    commit_description: str = "",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Make the repo's files exactly `files` (path in repo -> local file or bytes) in ONE commit on `revision`."""
    api = _api(token)
    where = f"pushing {repo_type} {repo_id}"
    _hub_call(where, api.create_repo, repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision and revision != "main":
        _hub_call(where, api.create_branch, repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    head = _hub_call(where, api.repo_info, repo_id, repo_type=repo_type, revision=revision).sha
    existing = _hub_call(where, api.list_repo_files, repo_id, repo_type=repo_type, revision=head)
    operations: list = [CommitOperationAdd(path, source) for path, source in sorted(files.items())]
    stale = sorted(set(existing) - set(files) - {".gitattributes"})
    operations += [CommitOperationDelete(path) for path in stale]
    return _hub_call(
        where,
        api.create_commit,
        repo_id,
        operations,
        commit_message=commit_message,
        commit_description=commit_description,
        repo_type=repo_type,
        revision=revision,
        parent_commit=head,
    )


def _folder_files(folder: Path) -> dict[str, Path]:
    """Files of a saved artifact folder, minus the stage manifest and any old card or hidden files."""
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name not in SKIPPED_FILES
        and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)
    }


# cards


def _template_env(templates_dir: Path):
    import jinja2

    if not (templates_dir / "dataset.md").is_file():
        raise HubError(
            f"{templates_dir}: card templates not found (dataset.md, tokenizer.md, recommender.md); "
            "pass templates_dir= or use a source checkout of deepinterestgr (hub_cards/ at its top level)"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty hole in the card
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:,.4f}"
    env.filters["pct"] = lambda v: f"{v:.1%}"
    env.filters["cell"] = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    env.filters["yaml"] = lambda v: yaml.safe_dump(v, sort_keys=False, allow_unicode=True).rstrip()
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


LEFTOVER = re.compile(r"\{\{|\{%|\{#|\[More Information Needed\]")  # template syntax left in a rendered card


def render_card(
    kind: str, card_data: ModelCardData | DatasetCardData, context: dict, templates_dir: str | Path | None = None
) -> ModelCard | DatasetCard:
    """Render `hub_cards/{kind}.md` into a `ModelCard` / `DatasetCard`; refuses to leave any hole unfilled."""
    import jinja2

    env = _template_env(Path(templates_dir or CARDS_DIR))
    try:
        text = env.get_template(f"{kind}.md").render(card_data=card_data.to_yaml(), **context)
    except jinja2.UndefinedError as err:
        message = f"hub_cards/{kind}.md: {err.message}; the template asks for a value the push does not give"
        raise HubError(message) from None
    except jinja2.TemplateSyntaxError as err:
        raise HubError(f"hub_cards/{kind}.md:{err.lineno}: template syntax error ({err.message})") from None
    body = text.split("\n---\n", 1)[-1]
    leftover = LEFTOVER.search(body)
    if leftover:
        line = body[: leftover.start()].count("\n") + 1
        raise HubError(f"hub_cards/{kind}.md rendered with an unfilled value {leftover.group()!r} at line {line}")
    return (DatasetCard if kind == "dataset" else ModelCard)(text)


def _license_metadata(license: str | None) -> dict:
    return dict(LICENSE) if license in (None, "other") else {"license": license}


def _stages(run: RunRecord | None, names: tuple[str, ...]) -> list[dict]:
    """Card sections of the stages that ran: name, what it does, its settings (no local paths)."""
    out = []
    for name in names:
        manifest = run.stage(name) if run else None
        if not manifest:
            continue
        settings = manifest.get("source") if name == "prepare" else manifest.get("config")
        settings = dict(settings or {})
        if name == "embed" and not settings.get("model"):
            settings["model"] = f"{DEFAULT_TEXT_ENCODER} (the default)"
        if name == "prepare" and settings.get("path") and not str(settings["path"]).startswith("bundled:"):
            settings["path"] = Path(str(settings["path"])).name  # the folder name, not this machine's path
        out.append({"name": name, "help": STAGE_HELP[name], "settings": settings, "report": manifest.get("report")})
    return out


def _provenance(source: dict) -> dict:
    """Where the data came from, for the cards: a sentence, the bundled sample's README and the data citations."""
    fmt = source.get("format", "")
    if not fmt:  # pushed without its run folder (e.g. `GenerativeRecommender.push_to_hub`)
        text, release = "Amazon Review data (which release was not recorded with this push)", "amazon2014"
    else:
        text, release = SOURCES.get(fmt, (f"Amazon Review data (format {fmt})", "amazon2014"))
    sample, sample_notes = "", ""
    path = str(source.get("path") or "")
    if path.startswith("bundled:"):
        from deepinterestgr.data.prepare import sample_path

        sample = path.split(":", 1)[1]
        readme = sample_path() / "README.md"
        if readme.is_file():
            sample_notes = readme.read_text(encoding="utf-8").split("\n", 1)[-1].strip()
    return {"format": fmt, "text": text, "release": release, "sample": sample, "sample_notes": sample_notes}


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((label for bound, label in bounds if n < bound), "1M<n<10M" if n < 10_000_000 else "n>10M")


def _link_urls(links: Mapping[str, str] | None) -> dict[str, str]:
    """Hub URLs of the sibling repos a card links to (kind -> repo id; the `dataset` one lives under datasets/)."""
    endpoint = HfApi().endpoint.rstrip("/")
    prefixes = {"dataset": "datasets/"}
    return {kind: f"{endpoint}/{prefixes.get(kind, '')}{repo}" for kind, repo in (links or {}).items()}


# the dataset


def hub_items(items: Dataset, *, include_embeddings: bool = False) -> Dataset:
    """The items table as pushed: contract columns first, enrichment after, big vector columns only if asked."""
    if "item_id" not in items.column_names:
        raise HubError(f"the items table has no item_id column (columns: {', '.join(items.column_names)})")
    keep = [c for c in items.column_names if include_embeddings or not c.endswith("embedding")]
    order = [c for c in ITEM_COLUMNS if c in keep] + [c for c in keep if c not in ITEM_COLUMNS]
    return items.select_columns(order)


def _write_parquet(table: Dataset, folder: Path, config: str) -> dict[str, Path]:
    """`{config}/train-0000i-of-0000n.parquet` shards of at most ~500 MB; path in repo -> local file."""
    shards = max(1, math.ceil(table.data.nbytes / MAX_SHARD_BYTES))
    out = {}
    for i in range(shards):
        name = f"{config}/train-{i:05d}-of-{shards:05d}.parquet"
        (folder / config).mkdir(parents=True, exist_ok=True)
        with quiet_datasets():
            table.shard(shards, i, contiguous=True).to_parquet(str(folder / name))
        out[name] = folder / name
    return out


def _columns(table: Dataset) -> list[dict]:
    return [
        {"name": name, "dtype": _dtype(feature), "help": COLUMN_HELP.get(name, "Added by a pipeline stage.")}
        for name, feature in table.features.items()
    ]


def _dtype(feature) -> str:
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list[{_dtype(inner)}]"
    return str(getattr(feature, "dtype", type(feature).__name__))


def _enrichment(items: Dataset) -> list[tuple[str, str]]:
    """Statistics of the enrichment columns present: (what, value)."""
    rows = []
    n = max(len(items), 1)
    if "caption" in items.column_names:
        rows.append(("items with a caption", f"{sum(1 for c in items['caption'] if c) / n:.1%}"))
    if "descriptors" in items.column_names:
        counts = [len(d or []) for d in items["descriptors"]]
        rows.append(("descriptors per item (mean)", f"{sum(counts) / n:.2f}"))
    if "descriptor_labels" in items.column_names:
        flat = [y for row in items["descriptor_labels"] for y in (row or [])]
        rows.append(("descriptors labelled 1", f"{sum(flat) / max(len(flat), 1):.1%} of {len(flat):,}"))
    if "quality" in items.column_names:
        values = [q for q in items["quality"] if q is not None]
        rows.append(("mean item quality q_i", f"{sum(values) / max(len(values), 1):.3f}"))
    if "sid" in items.column_names:
        # codes per item, not "levels + suffix": with per-item suffixes every item has L + 1 codes
        lengths = Counter(len(s) for s in items["sid"])
        rows.append(("codes per SID", "; ".join(f"{k}: {n:,} items" for k, n in sorted(lengths.items()))))
    return rows


def _added(items: Dataset) -> str:
    """What the pipeline added to the source columns, in words."""
    names = {
        "caption": "VLM captions",
        "descriptors": "intent descriptors mined by LLMs",
        "descriptor_labels": "their judge labels",
        "quality": "item quality",
        "sid": "semantic IDs",
    }
    added = [text for column, text in names.items() if column in items.column_names]
    if not added:
        return "the columns of the source data"
    return "the columns the pipeline added (" + ", ".join(added) + ")"


def _example_rows(items: Dataset, n: int = 3) -> tuple[list[str], list[list[str]]]:
    wanted = ("item_id", "title", "brand", "categories", "descriptors", "quality", "sid")
    columns = [c for c in wanted if c in items.column_names]
    rows = []
    for row in items.select(range(min(n, len(items)))).to_list():
        cells = []
        for c in columns:
            value = row[c]
            if isinstance(value, float):
                value = f"{value:.3f}"
            elif isinstance(value, list):
                value = ", ".join(str(v) for v in value[:5]) + (", ..." if len(value) > 5 else "")
            cells.append("" if value is None else str(value)[:80])
        rows.append(cells)
    return columns, rows


def push_dataset(
    items: Dataset,
    sequences: Dataset,
    repo_id: str,
    *,
    run: RunRecord | None = None,
    links: Mapping[str, str] | None = None,
    include_embeddings: bool = False,
    license: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    templates_dir: str | Path | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Push items and sequences as one dataset repo with configs `items` and `sequences` (parquet), one commit."""
    check_repo_id(repo_id, "dataset repo id")
    items = hub_items(items, include_embeddings=include_embeddings)
    missing = [c for c in ("user_id", "item_ids") if c not in sequences.column_names]
    if missing:
        raise HubError(f"the sequences table lacks {', '.join(missing)} (columns: {', '.join(sequences.column_names)})")
    sequences = sequences.select_columns([c for c in SEQUENCE_COLUMNS if c in sequences.column_names])
    source = run.source() if run else {}
    prepared = (run.stage("prepare") if run else None) or {}
    configs = [
        {"config_name": "items", "default": True, "data_files": [{"split": "train", "path": "items/train-*.parquet"}]},
        {"config_name": "sequences", "data_files": [{"split": "train", "path": "sequences/train-*.parquet"}]},
    ]
    name = run.path.name if run else repo_id.split("/")[1]
    card_data = DatasetCardData(
        **_license_metadata(license),
        language=["en"],
        pretty_name=f"DeepInterestGR items and sequences ({name})",
        size_categories=[_size_category(max(len(items), len(sequences)))],
        tags=[*TAGS, "amazon-reviews"],
        configs=configs,
    )
    context = {
        "repo_id": repo_id,
        "name": name,
        "n_items": len(items),
        "n_users": len(sequences),
        "n_interactions": sum(len(s) for s in sequences["item_ids"]),
        "item_columns": _columns(items),
        "sequence_columns": _columns(sequences),
        "stats": prepared.get("stats"),
        "enrichment": _enrichment(items),
        "added": _added(items),
        "example": _example_rows(items),
        "max_history": source.get("max_history") or 50,
        "stages": _stages(run, ("prepare", "mine", "judge", "embed", "quantize")),
        "provenance": _provenance(source),
        "license": card_data.license,
        "links": _link_urls(links),
        "link_ids": dict(links or {}),
        "include_embeddings": include_embeddings,
    }
    card = render_card("dataset", card_data, context, templates_dir)
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, str | Path | bytes] = {}
        files.update(_write_parquet(items, Path(tmp), "items"))
        files.update(_write_parquet(sequences, Path(tmp), "sequences"))
        files["README.md"] = str(card).encode()
        return commit_files(
            repo_id,
            "dataset",
            files,
            commit_message=commit_message or f"DeepInterestGR items and sequences ({name})",
            commit_description=f"{len(items):,} items, {len(sequences):,} users; pushed with deepinterestgr.",
            private=private,
            token=token,
            revision=revision,
        )


def load_hub_dataset(repo_id: str, revision: str | None = None, *, token: str | None = None) -> tuple[Dataset, Dataset]:
    """(items, sequences) of a dataset repo pushed by `push_dataset` (pin `revision` for reproducibility)."""
    check_repo_id(repo_id, "dataset repo id")
    with quiet_datasets():
        items = load_dataset(repo_id, "items", split="train", revision=revision, token=token)
        sequences = load_dataset(repo_id, "sequences", split="train", revision=revision, token=token)
    return items, sequences


# the SID tokenizer


def push_tokenizer(
    folder: str | Path,
    repo_id: str,
    *,
    run: RunRecord | None = None,
    links: Mapping[str, str] | None = None,
    license: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    templates_dir: str | Path | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Push a saved `SemanticIDTokenizer` folder (RQ-VAE weights + code + sid_map.json) with its card, one commit."""
    check_repo_id(repo_id, "tokenizer repo id")
    folder = Path(folder)
    for needed in ("config.json", "model.safetensors", "sid_map.json", "modeling_rqvae.py"):
        if not (folder / needed).is_file():
            raise HubError(
                f"{folder}: missing {needed}; pass the tokenizer folder of the quantize stage (sid/tokenizer)"
            )
    from deepinterestgr.sid.semantic_ids import SemanticIDMap

    config = _read_json(folder / "config.json")
    report = _read_json(folder / "sid_quality.json") if (folder / "sid_quality.json").is_file() else {}
    sid_map = SemanticIDMap.load(folder / "sid_map.json")
    examples = [(item, sid_map.tokens_of(item)) for item in sid_map.item_ids[:3]]
    embed = (run.stage("embed") if run else None) or {}
    embed_config = embed.get("config") or {}
    encoder = f"text embedding by {embed_config.get('model') or DEFAULT_TEXT_ENCODER}"
    if embed.get("fused"):
        encoder += f", fused with a {embed_config.get('collaborative_dim')}-d embedding learned from train interactions"
    name = run.path.name if run else repo_id.split("/")[1]
    card_data = ModelCardData(
        **_license_metadata(license),
        library_name="transformers",
        tags=[*TAGS, "rq-vae", "custom_code"],
        datasets=[links["dataset"]] if links and "dataset" in links else None,
    )
    context = {
        "repo_id": repo_id,
        "name": name,
        "config": config,
        "report": report,
        "n_items": len(sid_map),
        "suffix_size": sid_map.suffix_size,
        "per_item_suffix": sid_map.per_item_suffix,
        "examples": examples,
        "encoder": encoder,
        "stages": _stages(run, ("embed", "quantize")),
        "provenance": _provenance(run.source() if run else {}),
        "license": card_data.license,
        "links": _link_urls(links),
        "link_ids": dict(links or {}),
    }
    card = render_card("tokenizer", card_data, context, templates_dir)
    files: dict[str, str | Path | bytes] = {**_folder_files(folder), "README.md": str(card).encode()}
    return commit_files(
        repo_id,
        "model",
        files,
        commit_message=commit_message or f"DeepInterestGR SID tokenizer ({name})",
        commit_description=f"RQ-VAE with {config.get('num_levels')} levels x {config.get('codebook_size')} codes, "
        f"{len(sid_map):,} items; pushed with deepinterestgr.",
        private=private,
        token=token,
        revision=revision,
    )


# the recommender


def _parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "np") as handle:
            for key in handle.keys():  # noqa: SIM118  (safe_open has keys(), not iteration)
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def _metrics_rows(metrics: Mapping[str, dict], pushed: str | None) -> list[dict]:
    rows = []
    for stage, result in metrics.items():
        runs, config = result["runs"], result.get("config") or {}
        cells = []
        for name in METRIC_NAMES:
            value = result["summary"][name]
            cell = f"{value['mean']:.4f}"
            if len(runs) > 1:
                cell += f" ± {value.get('std', 0.0):.4f}"
            cells.append(cell)
        rows.append(
            {
                "label": ("this model" if stage == "model" else f"{stage} (this model)") if stage == pushed else stage,
                "split": result["split"] + (" (history excluded)" if config.get("exclude_history") else ""),
                "users": runs[0]["users"],
                "beams": config.get("num_beams", "-"),
                "runs": len(runs),
                "cells": cells,
            }
        )
    return rows


def _base_model(backbone: Mapping) -> str | None:
    """The backbone's Hub id when it came from the Hub (not the scratch model or a local folder)."""
    name = str(backbone.get("name") or "")
    if not name or name == "scratch-llama" or Path(name).exists() or name.count("/") != 1:
        return None
    return name


def push_recommender(
    folder: str | Path,
    repo_id: str,
    *,
    metrics: Mapping[str, dict] | str | Path | None = None,
    stage: str | None = None,
    allow_missing_metrics: bool = False,
    run: RunRecord | None = None,
    links: Mapping[str, str] | None = None,
    license: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    templates_dir: str | Path | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Push a saved `GenerativeRecommender` folder with a card showing its evaluation, as one commit.

    `metrics`: the evaluator's metrics.json (a path, or a dict), or several keyed by stage ({"sft": ..., "grpo":
    ...}) with `stage` naming the pushed one. Without metrics the push is refused unless `allow_missing_metrics`.
    """
    check_repo_id(repo_id, "recommender repo id")
    folder = Path(folder)
    for needed in ("config.json", "sid_map.json", "recommender_config.json"):
        if not (folder / needed).is_file():
            raise HubError(
                f"{folder}: missing {needed}; pass a folder written by GenerativeRecommender.save_pretrained"
            )
    if isinstance(metrics, (str, Path)):
        metrics = {stage or "model": check_metrics(_read_json(Path(metrics)), metrics)}
    elif metrics is not None and "summary" in metrics:
        metrics = {stage or "model": check_metrics(dict(metrics))}
    elif metrics is not None:
        metrics = {key: check_metrics(value, f"metrics[{key!r}]") for key, value in metrics.items()}
    pushed = stage or (next(iter(metrics)) if metrics and len(metrics) == 1 else None)
    if (not metrics or pushed not in metrics) and not allow_missing_metrics:
        raise HubError(
            f"{folder}: no evaluation metrics for this recommender; run `deepinterestgr evaluate` and pass its "
            "metrics.json (metrics=...), or allow_missing_metrics=True (--allow-missing-metrics) to push it anyway"
        )
    from deepinterestgr.sid.semantic_ids import SemanticIDMap

    config = _read_json(folder / "config.json")
    rec_config = _read_json(folder / "recommender_config.json")
    sid_map = SemanticIDMap.load(folder / "sid_map.json")
    history = sid_map.item_ids[: min(3, len(sid_map))]
    training = [s for s in _stages(run, ("sft", "grpo")) if s["name"] == "sft" or stage == "grpo"]
    sft = (run.stage("sft") if run else None) or {}
    backbone = (sft.get("config") or {}).get("backbone") or {}
    base_model = _base_model(backbone)
    name = run.path.name if run else repo_id.split("/")[1]
    card_data = ModelCardData(
        **_license_metadata(license),
        library_name="transformers",
        tags=[*TAGS, "grpo" if stage == "grpo" else "sft"],
        datasets=[links["dataset"]] if links and "dataset" in links else None,
        base_model=base_model,
    )
    context = {
        "repo_id": repo_id,
        "name": name,
        "stage": stage if stage in ("sft", "grpo") else "",
        "metrics": _metrics_rows(metrics or {}, pushed),
        "n_items": len(sid_map),
        "levels": sid_map.num_levels,
        "per_item_suffix": sid_map.per_item_suffix,
        "parameters": _parameters(folder),
        "architecture": (config.get("architectures") or [config.get("model_type", "causal LM")])[0],
        "config": config,
        "max_history": rec_config.get("max_history"),
        "catalogue_softmax": rec_config.get("sid_softmax") == "catalogue",
        "backbone": backbone.get("name") or "scratch-llama",
        "base_model": base_model or "",
        "history": history,
        "history_tokens": [sid_map.tokens_of(i) for i in history],
        "stages": training,
        "provenance": _provenance(run.source() if run else {}),
        "license": card_data.license,
        "links": _link_urls(links),
        "link_ids": dict(links or {}),
    }
    card = render_card("recommender", card_data, context, templates_dir)
    files: dict[str, str | Path | bytes] = {**_folder_files(folder), "README.md": str(card).encode()}
    if metrics and pushed in metrics:
        files["metrics.json"] = json.dumps(metrics[pushed], indent=2).encode()
    return commit_files(
        repo_id,
        "model",
        files,
        commit_message=commit_message or f"DeepInterestGR recommender ({name}{f', {stage}' if stage else ''})",
        commit_description=f"{config.get('model_type', 'causal LM')} over {len(sid_map):,} catalogue items; "
        "pushed with deepinterestgr.",
        private=private,
        token=token,
        revision=revision,
    )


# a whole run


def run_repo_ids(namespace: str, name: str, repo_ids: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{namespace}/{name}-items`, `-sid-tokenizer`, `-recommender`, with any of them overridden by `repo_ids`."""
    ids = {kind: f"{namespace}/{name}{suffix}" for kind, suffix in REPO_SUFFIXES.items()}
    ids.update(repo_ids or {})
    for kind, repo_id in ids.items():
        check_repo_id(repo_id, f"{kind} repo id (from namespace {namespace!r} and name {name!r})")
    return ids


def push_run(
    output_dir: str | Path,
    namespace: str | None = None,
    *,
    name: str | None = None,
    repo_ids: Mapping[str, str] | None = None,
    stage: str = "auto",
    include_embeddings: bool = False,
    allow_missing_metrics: bool = False,
    license: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    templates_dir: str | Path | None = None,
) -> dict[str, CommitInfo]:
    """Push a pipeline run's dataset, SID tokenizer and recommender (grpo if present, else sft): three commits.

    Everything is checked before the first upload (folders, metrics, repo ids). Returns kind -> `CommitInfo` (a
    str: the commit URL; `.oid` is the commit sha, `.repo_url.url` the repo URL).
    """
    run = RunRecord.read(output_dir)
    path = run.path
    if stage not in ("auto", "sft", "grpo"):
        raise HubError(f"stage must be auto, sft or grpo, got {stage!r}")
    if stage == "auto":
        stage = "grpo" if (path / "grpo" / MANIFEST).is_file() else "sft"
    model_dir = path / stage
    items_dir = next((path / s for s in ("sid", "judged", "mined", "prepared") if (path / s / "items").is_dir()), None)
    needs = {
        path / "prepared" / "sequences": "the prepare stage",
        path / "sid" / "tokenizer": "the quantize stage",
        model_dir / MANIFEST: f"the {stage} stage",
    }
    for needed, by in needs.items():
        if not needed.exists():
            raise HubError(f"{needed}: not found; run {by} first (deepinterestgr pipeline --config ...)")
    if stage not in run.metrics and not allow_missing_metrics:
        raise HubError(
            f"{path / 'evaluation' / stage / 'metrics.json'}: not found, so the recommender card would have no "
            "metrics; run `deepinterestgr pipeline` (it evaluates) or pass --allow-missing-metrics"
        )
    name = name or path.resolve().name
    if namespace is None:
        namespace = _hub_call("reading the token's user name", _api(token).whoami)["name"]
    ids = run_repo_ids(namespace, name, repo_ids)
    _api(token)  # a token must be there before anything is uploaded
    with quiet_datasets():
        items = load_from_disk(str(items_dir / "items"))
        sequences = load_from_disk(str(path / "prepared" / "sequences"))
    common = {"run": run, "private": private, "token": token, "revision": revision, "templates_dir": templates_dir}
    common["license"] = license
    links = dict(ids)
    results = {
        "dataset": push_dataset(items, sequences, ids["dataset"], links=links, include_embeddings=include_embeddings,
                                **common),
        "tokenizer": push_tokenizer(path / "sid" / "tokenizer", ids["tokenizer"], links=links, **common),
    }  # fmt: skip
    results["recommender"] = push_recommender(
        model_dir,
        ids["recommender"],
        metrics=run.metrics or None,
        stage=stage,
        allow_missing_metrics=allow_missing_metrics,
        links=links,
        **common,
    )
    return results


__all__ = [
    "HubError",
    "RunRecord",
    "check_repo_id",
    "commit_files",
    "hub_items",
    "load_hub_dataset",
    "push_dataset",
    "push_recommender",
    "push_run",
    "push_tokenizer",
    "render_card",
    "run_repo_ids",
]
