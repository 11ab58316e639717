"""Command line: one subcommand per stage, plus `pipeline`. User errors print one line and exit 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from deepinterestgr import __version__
from deepinterestgr.errors import DeepInterestGRError

app = typer.Typer(
    name="deepinterestgr",
    help="Generative recommendation with intent-enriched semantic IDs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def user_errors(func: F) -> F:
    """Turn a `DeepInterestGRError` into one red line on stderr and exit code 2, no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DeepInterestGRError as err:
            err_console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def prepare(
    format: Annotated[str, typer.Option("--format", "-f", help="p5 | lcrec | minionerec | amazon2014 | amazon2018")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save items, sequences and splits to.")],
    path: Annotated[
        Path | None, typer.Option("--path", "-p", help="Source folder; omit for the bundled Beauty sample.")
    ] = None,
    k_core: Annotated[int | None, typer.Option(help="k-core threshold (raw dumps default to 5).", min=1)] = None,
    max_history: Annotated[int | None, typer.Option(help="Last N items kept in valid/test histories.", min=1)] = 50,
) -> None:
    """Read a source dataset, print its statistics, and save items, sequences and leave-last-out splits."""
    from deepinterestgr.data.prepare import prepare as prepare_data
    from deepinterestgr.data.stats import stats_table

    data = prepare_data(format, path, k_core=k_core, max_history=max_history)
    saved = data.save_to_disk(out)
    console.print(stats_table(data.stats(), title=f"{format}: {data.source['path']}"))
    splits = ", ".join(f"{name} {len(split):,}" for name, split in data.splits.items())
    console.print(f"splits: {splits}")
    console.print(f"saved to {saved}")


@app.command()
@user_errors
def mine(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML (its `mine` section is used).")],
) -> None:
    """Mine deep interests of the config's prepared items (captions, descriptors, user interests); resumable."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_mine

    pipeline_config = PipelineConfig.from_yaml(config)
    out = Path(pipeline_config.output_dir)
    console.print(f"saved to {run_mine(out / 'prepared', out / 'mined', pipeline_config.mine, console=console)}")


@app.command()
@user_errors
def judge(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML (its `judge` section is used).")],
) -> None:
    """Label the mined descriptors 0/1 and compute each item's quality q_i; resumable."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_judge

    cfg = PipelineConfig.from_yaml(config)
    out = Path(cfg.output_dir)
    console.print(f"saved to {run_judge(out / 'mined', out / 'judged', cfg.judge, cfg.mine, console=console)}")


@app.command()
@user_errors
def embed(
    data: Annotated[Path, typer.Option("--data", "-d", help="Folder written by `prepare`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the embedded items.")],
    model: Annotated[str | None, typer.Option(help="sentence-transformers id or folder (default: MiniLM).")] = None,
    collaborative: Annotated[str, typer.Option(help="auto | on | off: fuse a train-interaction embedding.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per encoder batch.")] = 128,
    items: Annotated[
        Path | None, typer.Option("--items", "-i", help="Mined items (`judge` or `mine` output); default: prepared.")
    ] = None,
    descriptors: Annotated[str, typer.Option(help="none | all | positive: descriptors in the text.")] = "positive",
) -> None:
    """Embed each item's enriched text (plus collaborative signal) into the `embedding` column."""
    from deepinterestgr.config import EmbedConfig
    from deepinterestgr.stages import run_embed

    config = _validated(
        EmbedConfig, model=model, collaborative=collaborative, batch_size=batch_size, descriptors=descriptors
    )
    console.print(f"saved to {run_embed(data, out, config, console=console, items_dir=items)}")


@app.command()
@user_errors
def quantize(
    items: Annotated[Path, typer.Option("--items", "-i", help="Folder written by `embed`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for items with `sid` and the tokenizer.")],
    codebook_size: Annotated[int, typer.Option(min=2, help="Codes per level.")] = 256,
    num_levels: Annotated[int, typer.Option(min=1, help="Levels before the suffix.")] = 3,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed.")] = 42,
    suffix: Annotated[str, typer.Option(help="collision | item: suffix codes for colliding items or every item.")] = (
        "collision"
    ),
) -> None:
    """Train the RQ-VAE, assign every item its SID, save the tokenizer and a quality report."""
    from deepinterestgr.config import QuantizeConfig
    from deepinterestgr.stages import run_quantize

    config = _validated(
        QuantizeConfig, codebook_size=codebook_size, num_levels=num_levels, epochs=epochs, seed=seed, suffix=suffix
    )
    path = run_quantize(items, out, config, console=console)
    console.print(f"saved to {path} (tokenizer in {path / 'tokenizer'})")


@app.command()
@user_errors
def sft(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML (its `sft` section is used).")],
) -> None:
    """Train the recommender on the config's prepared data and SIDs (also: `accelerate launch -m
    deepinterestgr.recommender.sft --config ...`)."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_sft

    pipeline_config = PipelineConfig.from_yaml(config)
    out = Path(pipeline_config.output_dir)
    console.print(f"saved to {run_sft(out / 'prepared', out / 'sid', out / 'sft', pipeline_config.sft)}")


@app.command()
@user_errors
def grpo(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML (its `grpo` section is used).")],
) -> None:
    """GRPO of the config's SFT recommender with constrained rollouts and the QARM rewards (also: `accelerate
    launch -m deepinterestgr.rl.grpo --config ...`)."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_grpo

    pipeline_config = PipelineConfig.from_yaml(config)
    out = Path(pipeline_config.output_dir)
    path = run_grpo(out / "prepared", out / "sid", out / "sft", out / "grpo", pipeline_config.grpo)
    console.print(f"saved to {path}")


@app.command()
@user_errors
def evaluate(
    model: Annotated[list[Path], typer.Option("--model", "-m", help="Recommender folder; repeat for seeds.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Folder written by `prepare`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for metrics.json and metrics.md.")],
    split: Annotated[str, typer.Option(help="valid | test")] = "test",
    num_beams: Annotated[int, typer.Option(min=1, help="Beam width.")] = 20,
    max_users: Annotated[int | None, typer.Option(min=1, help="Only the first N users.")] = None,
    exclude_history: Annotated[bool, typer.Option(help="Rank only items outside each user's history.")] = False,
) -> None:
    """Full-ranking HR@5/10 and NDCG@5/10 by constrained beam search; mean ± std over several models."""
    from deepinterestgr.config import EvaluateSection
    from deepinterestgr.stages import run_evaluate

    config = _validated(
        EvaluateSection, split=split, num_beams=num_beams, max_users=max_users, exclude_history=exclude_history
    )
    run_evaluate(model, data, out, config, console=console)


@app.command()
@user_errors
def recommend(
    model: Annotated[str, typer.Option("--model", "-m", help="Recommender folder or Hub id.")],
    history: Annotated[list[str], typer.Argument(help="Item ids the user interacted with, oldest first.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many items.")] = 10,
    num_beams: Annotated[int, typer.Option(min=1, help="Beam width (>= k).")] = 20,
    revision: Annotated[str | None, typer.Option(help="Hub revision to pin.")] = None,
    exclude_history: Annotated[bool, typer.Option(help="Never recommend an item of the history.")] = False,
) -> None:
    """Top-k catalogue items for one history, by constrained beam search (item ids and scores)."""
    from rich.table import Table

    from deepinterestgr.errors import ConfigError
    from deepinterestgr.recommender.model import GenerativeRecommender

    if k > num_beams:
        raise ConfigError(f"-k {k} needs --num-beams >= {k} (got {num_beams}): a beam yields one item")
    recommender = GenerativeRecommender.from_pretrained(model, revision=revision)
    table = Table("rank", "item_id", "SID", "score")
    recommendations = recommender.recommend([history], k=k, num_beams=num_beams, exclude_history=exclude_history)
    for rank, rec in enumerate(recommendations[0], 1):
        table.add_row(str(rank), rec.item_id, recommender.sid_map.tokens_of(rec.item_id), f"{rec.score:.4f}")
    console.print(table)


@app.command()
@user_errors
def push(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline YAML (its output_dir).")] = None,
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Run folder (instead of --config).")] = None,
    namespace: Annotated[str | None, typer.Option(help="User or organisation (default: the token's user).")] = None,
    name: Annotated[str | None, typer.Option(help="Repo name prefix (default: the run folder's name).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repos private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (created if missing).")] = None,
    allow_missing_metrics: Annotated[
        bool, typer.Option("--allow-missing-metrics", help="Push a recommender that was never evaluated.")
    ] = False,
) -> None:
    """Push the run's dataset, SID tokenizer and recommender to the Hub with cards, one commit each (token from
    HF_TOKEN or `hf auth login`)."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.errors import ConfigError
    from deepinterestgr.hub import push_run

    if (config is None) == (run is None):
        raise ConfigError("give --config or --run (one of them): the pipeline config or the run folder to push")
    folder = Path(PipelineConfig.from_yaml(config).output_dir) if config else run
    pushed = push_run(
        folder, namespace, name=name, private=private or None, revision=revision,
        allow_missing_metrics=allow_missing_metrics,
    )  # fmt: skip
    for kind, commit in pushed.items():
        console.print(f"{kind}: {commit.repo_url.url} @ {commit.oid}", highlight=False, soft_wrap=True)


def _validated(model_cls, **values):
    """Build a config section from CLI options, turning validation errors into one-line user errors."""
    from pydantic import ValidationError

    from deepinterestgr.errors import ConfigError

    try:
        return model_cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


@app.command()
@user_errors
def pipeline(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config, e.g. configs/quickstart.yaml.")],
) -> None:
    """Run all stages of a config in order, skipping those already done (resume)."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.pipeline import run_pipeline

    out = run_pipeline(PipelineConfig.from_yaml(config), console=console)
    console.print(f"artifacts in {out}")


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
