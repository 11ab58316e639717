"""Each pipeline stage as one function from its input folder to its output folder (what the CLI and
`pipeline` call). Stages talk only through these folders."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk
from rich.console import Console
from rich.table import Table

from deepinterestgr.artifacts import load_items, quiet_datasets, write_stage
from deepinterestgr.config import BackendSpec, EmbedConfig, EvaluateSection, JudgeConfig, MineConfig, QuantizeConfig
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.recommender.arguments import RecommenderSFTArguments
from deepinterestgr.rl.arguments import GRPOArguments

TOKENIZER_DIR = "tokenizer"


CACHE_FILE = "mining_cache.sqlite"
BUNDLED_MINED = "mined_items.parquet"  # in the bundled sample's folder: its items mined and judged by SmolLM2
BUNDLED_USERS = "user_interests.parquet"  # in the same folder: its users' interests, mined by SmolLM2


def make_backend(spec: BackendSpec):
    """The mining backend a config names (models load here, once per stage)."""
    if spec.kind == "served":
        from deepinterestgr.mining.served import ServedBackend

        return ServedBackend(spec.base_url, spec.model, concurrency=spec.concurrency, timeout=spec.timeout)
    from deepinterestgr.mining.local import LocalBackend

    return LocalBackend(spec.model, gguf_file=spec.gguf_file, batch_size=spec.batch_size)


def join_mined_columns(items: Dataset, path: str | Path | None = None) -> Dataset:
    """Mined + judged columns from a parquet file (default: the bundled sample's), joined to `items` by item_id."""
    from datasets import load_dataset

    from deepinterestgr.data.prepare import sample_path

    path = Path(path) if path is not None else sample_path() / BUNDLED_MINED
    if not path.is_file():
        raise DataError(
            f"mine.bundled: {path} does not exist; produce it with `python benchmarks/mine_beauty.py` (it writes "
            f"runs/mining/beauty_mined.parquet), cut that to the bundled sample's items as described in "
            f"{sample_path() / 'README.md'}, and save it as {path}; or set mine.bundled to false to mine the items"
        )
    with quiet_datasets():
        mined = load_dataset("parquet", data_files=str(path), split="train")
    by_id = {item_id: n for n, item_id in enumerate(mined["item_id"])}
    missing = [i for i in items["item_id"] if i not in by_id]
    if missing:
        raise DataError(
            f"mine.bundled: {len(missing):,} items (e.g. {missing[0]!r}) are not in {path}; the bundled columns "
            "cover the bundled sample only: set mine.bundled to false to mine these items"
        )
    rows = [by_id[i] for i in items["item_id"]]
    mined = mined.select(rows)
    for column in mined.column_names:
        if column != "item_id":
            if column in items.column_names:
                items = items.remove_columns(column)
            items = items.add_column(column, mined[column], feature=mined.features[column])
    return items


def load_user_interests(train: Dataset, path: str | Path | None = None) -> Dataset:
    """Mined user interests (`user_id`, `interests`) from a parquet file (default: the bundled sample's), for the
    users of `train`."""
    from datasets import load_dataset

    from deepinterestgr.data.prepare import sample_path

    path = Path(path) if path is not None else sample_path() / BUNDLED_USERS
    if not path.is_file():
        raise DataError(
            f"mine.user_interests: {path} does not exist; produce it with `python benchmarks/mine_sample_users.py` "
            "for the bundled sample, or set mine.bundled to false to mine the users"
        )
    with quiet_datasets():
        users = load_dataset("parquet", data_files=str(path), split="train")
    known = set(users["user_id"])
    missing = [u for u in train["user_id"] if u not in known]
    if missing:
        raise DataError(
            f"mine.user_interests: {len(missing):,} users (e.g. {missing[0]!r}) are not in {path}; the bundled "
            "interests cover the bundled sample only: set mine.bundled to false to mine these users"
        )
    wanted = set(train["user_id"])
    return users.filter(lambda row: row["user_id"] in wanted)


def run_mine(prepared_dir: str | Path, out: str | Path, config: MineConfig, *, console: Console) -> Path:
    """prepared items -> items with captions/descriptors (+ user interests); answers cached beside `out`."""
    import json

    from deepinterestgr.mining.cache import AnswerCache
    from deepinterestgr.mining.miner import mine_items, mine_user_interests

    data = PreparedData.load_from_disk(prepared_dir)
    out = Path(out)
    items, users, failures, summary = data.items, None, [], {}
    with AnswerCache(out.parent / CACHE_FILE) as cache:
        if config.bundled:
            items = join_mined_columns(items)
            summary["source"] = f"bundled ({BUNDLED_MINED})"
            if config.live_items:
                live = items.select(range(min(config.live_items, len(items))))
                backends = [make_backend(config.backends[0])]
                shipped = [c for c in MINED_COLUMNS if c in live.column_names]
                mined, report = mine_items(live.remove_columns(shipped), backends, cache)
                same = sum(a == b for a, b in zip(mined["descriptors"], live["descriptors"], strict=True))
                summary["live"] = {**report.summary(mined), "same_as_bundled": same}
                console.print(f"re-mined {len(live)} items live: {same} answers identical to the bundled ones")
            if config.user_interests:
                users = load_user_interests(data.splits["train"])
                summary["users"] = f"bundled ({BUNDLED_USERS}, {len(users):,} users)"
        else:
            backends = [make_backend(spec) for spec in config.backends]
            captioner = make_backend(config.captioner) if config.captioner else None
            items, report = mine_items(
                items, backends, cache, captioner=captioner, reasoning=config.reasoning,
                retry_failed=config.retry_failed,
            )  # fmt: skip
            summary.update(report.summary(items))
            failures = report.failures
            if config.user_interests:
                users, user_failures = mine_user_interests(
                    data.splits["train"], items, backends[0], cache, retry_failed=config.retry_failed
                )
                failures += user_failures
    console.print(mining_table(summary))

    def write(tmp: Path) -> None:
        items.save_to_disk(tmp / "items")
        if users is not None:
            users.save_to_disk(tmp / "users")
        with (tmp / "failures.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(failure) + "\n" for failure in failures)

    manifest = {"stage": "mine", "input": str(prepared_dir), "config": config.model_dump(), "report": summary}
    return write_stage(out, manifest, write)


MINED_COLUMNS = [
    "descriptors", "descriptor_confidences", "descriptor_sources", "descriptor_scores", "descriptor_labels", "quality"
]  # fmt: skip


def run_judge(
    mined_dir: str | Path, out: str | Path, config: JudgeConfig, mine: MineConfig, *, console: Console
) -> Path:
    """mined items -> `descriptor_labels` and `quality` (bundled items keep their shipped labels)."""
    import json

    from deepinterestgr.mining.cache import AnswerCache
    from deepinterestgr.mining.judge import (
        JudgeReport,
        classifier_labels,
        grounding_labels,
        grounding_scores,
        llm_labels,
        with_labels,
    )

    items = load_items(mined_dir, needs=("descriptors",))
    out = Path(out)
    report = JudgeReport(config.method)
    if mine.bundled:
        report.method = "bundled (grounding, SmolLM2-135M-Instruct)"
    elif config.method == "classifier":
        from deepinterestgr.mining.classifier import DescriptorClassifier

        if not config.classifier:
            raise ConfigError("judge.method classifier needs judge.classifier: the folder of a trained classifier")
        items = with_labels(items, classifier_labels(items, DescriptorClassifier.load(config.classifier)))
    else:
        backend = make_backend(config.backend or mine.backends[0])
        with AnswerCache(out.parent / CACHE_FILE) as cache:
            if config.method == "llm":
                items = with_labels(items, llm_labels(items, backend, cache, report))
            else:
                scores = grounding_scores(items, backend, cache)
                items = with_labels(items, grounding_labels(items, scores, threshold=config.threshold), scores)
    flat = [y for row in items["descriptor_labels"] for y in row]
    report.pairs, report.positive = len(flat), sum(flat)
    summary = {**report.summary(), "mean_quality": float(np.mean(items["quality"])) if len(items) else 0.0}
    console.print(
        f"judged {summary['pairs']:,} descriptors ({summary['method']}): {summary['positive_rate']:.1%} labelled 1, "
        f"mean item quality {summary['mean_quality']:.3f}"
    )
    manifest = {"stage": "judge", "input": str(mined_dir), "config": config.model_dump(), "report": summary}
    users = Path(mined_dir) / "users"

    def write(tmp: Path) -> None:
        items.save_to_disk(tmp / "items")
        if users.is_dir():
            shutil.copytree(users, tmp / "users")
        with (tmp / "failures.jsonl").open("w", encoding="utf-8") as f:  # llm judge answers that did not parse
            f.writelines(json.dumps(failure) + "\n" for failure in report.failures)

    return write_stage(out, manifest, write)


def mining_table(summary: dict) -> Table:
    """Rich table of a mining report."""
    table = Table(title="deep interests")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.3f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())
        table.add_row(key.replace("_", " "), str(value))
    return table


def run_embed(
    prepared_dir: str | Path,
    out: str | Path,
    config: EmbedConfig,
    *,
    console: Console,
    items_dir: str | Path | None = None,
) -> Path:
    """prepared folder (items from `items_dir` when given, e.g. the judge stage's) -> items with `embedding`."""
    from deepinterestgr.embedding.stage import embed_items
    from deepinterestgr.embedding.text import describe_text_encoder

    data = PreparedData.load_from_disk(prepared_dir)
    items = embed_items(
        load_items(items_dir) if items_dir else data.items,
        data.splits["train"]["item_ids"],
        model=config.model,
        batch_size=config.batch_size,
        collaborative=config.collaborative,
        collaborative_dim=config.collaborative_dim,
        collaborative_weight=config.collaborative_weight,
        descriptors=config.descriptors,
    )
    fused = "collaborative_embedding" in items.column_names
    console.print(
        f"embedded {len(items):,} items with {describe_text_encoder(config.model)}"
        f" ({'text + collaborative' if fused else 'text only'}, dim {len(items[0]['embedding'])})"
    )
    manifest = {
        "stage": "embed",
        "input": str(items_dir or prepared_dir),
        "config": config.model_dump(),
        "fused": fused,
    }
    return write_stage(out, manifest, lambda tmp: items.save_to_disk(tmp / "items"))


def run_quantize(embedded_dir: str | Path, out: str | Path, config: QuantizeConfig, *, console: Console) -> Path:
    """embedded items -> items with `sid` + the SID tokenizer folder (resumable from its checkpoint)."""
    from deepinterestgr.sid import RQVAEConfig, RQVAETrainingArguments
    from deepinterestgr.sid.quantize import quantize_items

    items = load_items(embedded_dir, needs=("embedding",))
    rq_config = RQVAEConfig(
        input_dim=len(items[0]["embedding"]),
        hidden_dims=config.hidden_dims,
        latent_dim=config.latent_dim,
        num_levels=config.num_levels,
        codebook_size=config.codebook_size,
    )
    args = RQVAETrainingArguments(
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=config.seed,
    )
    out = Path(out)
    checkpoint = out.parent / f".{out.name}.checkpoint"
    items, tokenizer = quantize_items(
        items, config=rq_config, args=args, checkpoint_dir=checkpoint, suffix=config.suffix
    )
    console.print(quality_table(tokenizer.report))

    def write(tmp: Path) -> None:
        items.save_to_disk(tmp / "items")
        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)

    manifest = {
        "stage": "quantize",
        "input": str(embedded_dir),
        "config": config.model_dump(),
        "report": tokenizer.report,
    }
    path = write_stage(out, manifest, write)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return path


def run_sft(prepared_dir: str | Path, sid_dir: str | Path, out: str | Path, args: RecommenderSFTArguments) -> Path:
    """prepared splits + SIDs -> trained `GenerativeRecommender` folder (checkpoints resume an interrupted run)."""
    from accelerate import PartialState

    from deepinterestgr.recommender.sft import train_recommender
    from deepinterestgr.sid.semantic_ids import SemanticIDMap

    data = PreparedData.load_from_disk(prepared_dir)
    items = load_items(sid_dir, needs=("sid",))
    sid_map = SemanticIDMap.load(Path(sid_dir) / TOKENIZER_DIR)
    out = Path(out)
    work = out.parent / f".{out.name}.checkpoints"
    recommender = train_recommender(data.splits["train"]["item_ids"], items, sid_map, args, work).recommender
    if PartialState().is_main_process:
        manifest = {"stage": "sft", "input": [str(prepared_dir), str(sid_dir)], "config": asdict(args)}
        write_stage(out, manifest, recommender.save_pretrained)
        shutil.rmtree(work, ignore_errors=True)
    return out


def run_grpo(
    prepared_dir: str | Path, sid_dir: str | Path, sft_dir: str | Path, out: str | Path, args: GRPOArguments
) -> Path:
    """SFT recommender -> GRPO-trained recommender folder (checkpoints resume an interrupted run)."""
    from accelerate import PartialState

    from deepinterestgr.rl.grpo import train_grpo

    data = PreparedData.load_from_disk(prepared_dir)
    items = load_items(sid_dir, needs=("sid",))
    out = Path(out)
    users = out.parent / "judged" / "users"  # mined user interests, for the interest-aware reward
    interests = None
    if users.is_dir():
        with quiet_datasets():
            table = load_from_disk(str(users))
        interests = dict(zip(table["user_id"], table["interests"], strict=True))
    work = out.parent / f".{out.name}.checkpoints"
    recommender = train_grpo(sft_dir, data.splits["train"], items, args, work, user_interests=interests).recommender
    if PartialState().is_main_process:
        manifest = {"stage": "grpo", "input": [str(prepared_dir), str(sid_dir), str(sft_dir)], "config": asdict(args)}
        write_stage(out, manifest, recommender.save_pretrained)
        shutil.rmtree(work, ignore_errors=True)
    return out


def run_evaluate(
    model_dirs: list[str | Path],
    prepared_dir: str | Path,
    out: str | Path,
    config: EvaluateSection,
    *,
    console: Console,
    label: str | None = None,
) -> dict:
    """Full-ranking HR/NDCG of one or more recommenders (e.g. training seeds): JSON + markdown table."""
    import json

    from deepinterestgr.evaluation.evaluate import evaluate_recommender, markdown_table, summarize
    from deepinterestgr.recommender.model import GenerativeRecommender

    data = PreparedData.load_from_disk(prepared_dir)
    split = data.splits[config.split]
    runs = []
    for model_dir in model_dirs:
        recommender = GenerativeRecommender.from_pretrained(model_dir)
        metrics = evaluate_recommender(
            recommender, split, num_beams=config.num_beams, batch_size=config.batch_size, max_users=config.max_users,
            exclude_history=config.exclude_history,
        )  # fmt: skip
        console.print(f"{model_dir}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k))
        runs.append({"model": str(model_dir), **metrics})
    summary = summarize(runs)
    excluded = ", history items excluded" if config.exclude_history else ""
    where = f"{config.split} ({runs[0]['users']:,} users, beam {config.num_beams}{excluded})"
    table = markdown_table(summary, label=f"{label}, {where}" if label else where)
    result = {"split": config.split, "runs": runs, "summary": summary, "config": config.model_dump()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "metrics.md").write_text(table + "\n")
    console.print(table, soft_wrap=True)
    return result


def quality_table(report: dict) -> Table:
    """Rich table of an SID quality report."""
    table = Table(title="semantic IDs")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("items", f"{report['items']:,}")
    table.add_row(f"unique at {report['levels']} levels", f"{report['unique_fraction']:.1%}")
    table.add_row("max items per shared tuple", str(report["max_items_per_tuple"]))
    table.add_row(f"suffix codes ({report.get('suffix', 'collision')})", str(report.get("suffix_size", "-")))
    table.add_row("utilization per level", " / ".join(f"{u:.0%}" for u in report["utilization"]))
    table.add_row("perplexity per level", " / ".join(f"{p:.0f}" for p in report["perplexity"]))
    table.add_row("reconstruction loss", f"{report['reconstruction_loss']:.5f}")
    table.add_row("train seconds", f"{report['train_seconds']:.1f} on {report['device']}")
    return table
