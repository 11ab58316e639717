"""`deepinterestgr pipeline`: run the stages in order, skipping those whose output is already complete and was
made with the same settings (a stage made with other settings, or before an earlier stage re-ran, is refused)."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

from rich.console import Console

from deepinterestgr.artifacts import read_manifest, stage_done
from deepinterestgr.config import PipelineConfig
from deepinterestgr.data.prepare import prepare
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.stats import stats_table
from deepinterestgr.errors import ConfigError
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

# settings added after a stage's folders were first written: what a folder made before them was made with
MADE_BEFORE_SETTING = {"quantize": {"suffix": "collision"}, "sft": {"sid_softmax": "vocabulary"}}


class _Stages:
    """Which finished stage folders may be reused: made with the current settings, and no earlier stage re-ran."""

    def __init__(self, console: Console):
        self.console = console
        self.rerun: str | None = None  # the first stage that ran in this call: what comes after it is new input

    def reuse(self, stage: str, folder: Path, settings: object) -> bool:
        if not stage_done(folder):
            self.rerun = self.rerun or stage
            return False
        if self.rerun is not None:
            raise ConfigError(
                f"{stage}: {folder} was made before {self.rerun} re-ran, so it is out of date; delete {folder} (and "
                "the stages after it) to rebuild it, or set output_dir to a new folder"
            )
        now = json.loads(json.dumps(asdict(settings) if is_dataclass(settings) else settings.model_dump(), default=str))
        made = {**MADE_BEFORE_SETTING.get(stage, {}), **(read_manifest(folder).get("config") or {})}
        changed = [
            f"{k}: {made.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(made) | set(now)) if made.get(k) != now.get(k)
        ]
        if changed:
            raise ConfigError(
                f"{stage}: {folder} was made with other settings ({'; '.join(changed)}); delete {folder} (and the "
                "stages after it) to rebuild it with these, or set output_dir to a new folder"
            )
        self.console.print(f"[bold]{stage}[/]: done already ({folder}), skipping")
        return True


def run_pipeline(config: PipelineConfig, *, console: Console | None = None) -> Path:
    """Run every stage that exists so far; returns the output folder."""
    console = console or Console()
    stages = _Stages(console)
    out = Path(config.output_dir)
    prepared_dir, embedded_dir, sid_dir = out / "prepared", out / "embedded", out / "sid"
    sft_dir, grpo_dir, eval_dir = out / "sft", out / "grpo", out / "evaluation"

    if PreparedData.is_prepared(prepared_dir):
        console.print(f"[bold]prepare[/]: done already ({prepared_dir}), skipping")
        data = PreparedData.load_from_disk(prepared_dir)
    else:
        stages.rerun = "prepare"
        console.print(f"[bold]prepare[/]: {config.data.format} from {config.data.path or 'the bundled sample'}")
        data = prepare(
            config.data.format, config.data.path, k_core=config.data.k_core, max_history=config.data.max_history
        )
        data.save_to_disk(prepared_dir)
    console.print(stats_table(data.stats(), title=f"prepared: {data.source.get('path')}"))

    items_dir = None
    if config.mine.enabled:
        mined_dir, judged_dir = out / "mined", out / "judged"
        if not stages.reuse("mine", mined_dir, config.mine):
            what = "bundled columns" if config.mine.bundled else ", ".join(b.model for b in config.mine.backends)
            console.print(f"[bold]mine[/]: deep interests ({what})")
            run_mine(prepared_dir, mined_dir, config.mine, console=console)
        if not stages.reuse("judge", judged_dir, config.judge):
            console.print(f"[bold]judge[/]: descriptor labels and item quality ({config.judge.method})")
            run_judge(mined_dir, judged_dir, config.judge, config.mine, console=console)
        items_dir = judged_dir

    if not stages.reuse("embed", embedded_dir, config.embed):
        console.print(f"[bold]embed[/]: item text -> embeddings (descriptors: {config.embed.descriptors})")
        run_embed(prepared_dir, embedded_dir, config.embed, console=console, items_dir=items_dir)

    if stages.reuse("quantize", sid_dir, config.quantize):
        console.print(quality_table(read_manifest(sid_dir)["report"]))
    else:
        console.print("[bold]quantize[/]: RQ-VAE -> semantic IDs")
        run_quantize(embedded_dir, sid_dir, config.quantize, console=console)

    if not stages.reuse("sft", sft_dir, config.sft):
        console.print(f"[bold]sft[/]: training the recommender ({config.sft.backbone.name})")
        run_sft(prepared_dir, sid_dir, sft_dir, config.sft)

    models = {"sft": sft_dir}
    if config.grpo.enabled:
        if not stages.reuse("grpo", grpo_dir, config.grpo):
            console.print(f"[bold]grpo[/]: rewards {', '.join(config.grpo.rewards)}, group {config.grpo.group_size}")
            run_grpo(prepared_dir, sid_dir, sft_dir, grpo_dir, config.grpo)
        models["grpo"] = grpo_dir

    for stage, model_dir in models.items():
        stage_eval = eval_dir / stage
        if (stage_eval / "metrics.md").is_file() and stages.rerun is None:  # evaluation is redone, never refused
            console.print(f"[bold]evaluate {stage}[/]: done already ({stage_eval}), skipping")
            console.print((stage_eval / "metrics.md").read_text())
        else:
            console.print(f"[bold]evaluate {stage}[/]: full ranking on {config.evaluate.split}")
            run_evaluate([model_dir], prepared_dir, stage_eval, config.evaluate, console=console, label=stage)
    return out
