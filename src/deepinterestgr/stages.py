"""Each pipeline stage as one function from its input folder to its output folder (what the CLI and
`pipeline` call). Stages talk only through these folders."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepinterestgr.artifacts import load_items, write_stage
from deepinterestgr.config import EmbedConfig, EvaluateSection, QuantizeConfig
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.recommender.arguments import RecommenderSFTArguments
from deepinterestgr.rl.arguments import GRPOArguments

TOKENIZER_DIR = "tokenizer"


def run_embed(prepared_dir: str | Path, out: str | Path, config: EmbedConfig, *, console: Console) -> Path:
    """prepared folder -> embedded items (`embedding` column)."""
    from deepinterestgr.embedding.stage import embed_items
    from deepinterestgr.embedding.text import describe_text_encoder

    data = PreparedData.load_from_disk(prepared_dir)
    items = embed_items(
        data.items,
        data.splits["train"]["item_ids"],
        model=config.model,
        batch_size=config.batch_size,
        collaborative=config.collaborative,
        collaborative_dim=config.collaborative_dim,
        collaborative_weight=config.collaborative_weight,
    )
    fused = "collaborative_embedding" in items.column_names
    console.print(
        f"embedded {len(items):,} items with {describe_text_encoder(config.model)}"
        f" ({'text + collaborative' if fused else 'text only'}, dim {len(items[0]['embedding'])})"
    )
    manifest = {"stage": "embed", "input": str(prepared_dir), "config": config.model_dump(), "fused": fused}
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
    items, tokenizer = quantize_items(items, config=rq_config, args=args, checkpoint_dir=checkpoint)
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
    work = out.parent / f".{out.name}.checkpoints"
    recommender = train_grpo(sft_dir, data.splits["train"], items, args, work).recommender
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
            recommender, split, num_beams=config.num_beams, batch_size=config.batch_size, max_users=config.max_users
        )
        console.print(f"{model_dir}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "@" in k))
        runs.append({"model": str(model_dir), **metrics})
    summary = summarize(runs)
    where = f"{config.split} ({runs[0]['users']:,} users, beam {config.num_beams})"
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
    table.add_row("suffix codes", str(report.get("suffix_size", "-")))
    table.add_row("utilization per level", " / ".join(f"{u:.0%}" for u in report["utilization"]))
    table.add_row("perplexity per level", " / ".join(f"{p:.0f}" for p in report["perplexity"]))
    table.add_row("reconstruction loss", f"{report['reconstruction_loss']:.5f}")
    table.add_row("train seconds", f"{report['train_seconds']:.1f} on {report['device']}")
    return table
