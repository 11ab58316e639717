"""`deepinterestgr pipeline`: run the stages in order, skipping those whose output is already complete."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from deepinterestgr.artifacts import read_manifest, stage_done
from deepinterestgr.config import PipelineConfig
from deepinterestgr.data.prepare import prepare
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.stats import stats_table
from deepinterestgr.stages import (
    quality_table,
    run_embed,
    run_evaluate,
    run_grpo,
    run_judge,
    run_mine,
    run_quantize,
    run_sft,
)


def run_pipeline(config: PipelineConfig, *, console: Console | None = None) -> Path:
    """Run every stage that exists so far; returns the output folder."""
    console = console or Console()
    out = Path(config.output_dir)
    prepared_dir, embedded_dir, sid_dir = out / "prepared", out / "embedded", out / "sid"
    sft_dir, grpo_dir, eval_dir = out / "sft", out / "grpo", out / "evaluation"

    if PreparedData.is_prepared(prepared_dir):
        console.print(f"[bold]prepare[/]: done already ({prepared_dir}), skipping")
        data = PreparedData.load_from_disk(prepared_dir)
    else:
        console.print(f"[bold]prepare[/]: {config.data.format} from {config.data.path or 'the bundled sample'}")
        data = prepare(
            config.data.format, config.data.path, k_core=config.data.k_core, max_history=config.data.max_history
        )
        data.save_to_disk(prepared_dir)
    console.print(stats_table(data.stats(), title=f"prepared: {data.source.get('path')}"))

    items_dir = None
    if config.mine.enabled:
        mined_dir, judged_dir = out / "mined", out / "judged"
        if stage_done(mined_dir):
            console.print(f"[bold]mine[/]: done already ({mined_dir}), skipping")
        else:
            what = "bundled columns" if config.mine.bundled else ", ".join(b.model for b in config.mine.backends)
            console.print(f"[bold]mine[/]: deep interests ({what})")
            run_mine(prepared_dir, mined_dir, config.mine, console=console)
        if stage_done(judged_dir):
            console.print(f"[bold]judge[/]: done already ({judged_dir}), skipping")
        else:
            console.print(f"[bold]judge[/]: descriptor labels and item quality ({config.judge.method})")
            run_judge(mined_dir, judged_dir, config.judge, config.mine, console=console)
        items_dir = judged_dir

    if stage_done(embedded_dir):
        console.print(f"[bold]embed[/]: done already ({embedded_dir}), skipping")
    else:
        console.print(f"[bold]embed[/]: item text -> embeddings (descriptors: {config.embed.descriptors})")
        run_embed(prepared_dir, embedded_dir, config.embed, console=console, items_dir=items_dir)

    if stage_done(sid_dir):
        console.print(f"[bold]quantize[/]: done already ({sid_dir}), skipping")
        console.print(quality_table(read_manifest(sid_dir)["report"]))
    else:
        console.print("[bold]quantize[/]: RQ-VAE -> semantic IDs")
        run_quantize(embedded_dir, sid_dir, config.quantize, console=console)

    if stage_done(sft_dir):
        console.print(f"[bold]sft[/]: done already ({sft_dir}), skipping")
    else:
        console.print(f"[bold]sft[/]: training the recommender ({config.sft.backbone.name})")
        run_sft(prepared_dir, sid_dir, sft_dir, config.sft)

    models = {"sft": sft_dir}
    if config.grpo.enabled:
        if stage_done(grpo_dir):
            console.print(f"[bold]grpo[/]: done already ({grpo_dir}), skipping")
        else:
            console.print(f"[bold]grpo[/]: rewards {', '.join(config.grpo.rewards)}, group {config.grpo.group_size}")
            run_grpo(prepared_dir, sid_dir, sft_dir, grpo_dir, config.grpo)
        models["grpo"] = grpo_dir

    for stage, model_dir in models.items():
        stage_eval = eval_dir / stage
        if (stage_eval / "metrics.md").is_file():
            console.print(f"[bold]evaluate {stage}[/]: done already ({stage_eval}), skipping")
            console.print((stage_eval / "metrics.md").read_text())
        else:
            console.print(f"[bold]evaluate {stage}[/]: full ranking on {config.evaluate.split}")
            run_evaluate([model_dir], prepared_dir, stage_eval, config.evaluate, console=console, label=stage)
    return out
