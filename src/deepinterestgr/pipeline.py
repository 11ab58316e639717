"""`deepinterestgr pipeline`: run the stages in order, skipping those whose output is already complete."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from deepinterestgr.config import PipelineConfig
from deepinterestgr.data.prepare import prepare
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.stats import stats_table


def run_pipeline(config: PipelineConfig, *, console: Console | None = None) -> Path:
    """Run every stage that exists so far; returns the output folder."""
    console = console or Console()
    out = Path(config.output_dir)
    prepared_dir = out / "prepared"
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
    return out
