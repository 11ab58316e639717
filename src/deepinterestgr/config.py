"""Pipeline configuration: a YAML file validated by pydantic, so a typo names its field instead of being ignored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepinterestgr.errors import ConfigError

FormatName = Literal["p5", "lcrec", "minionerec", "amazon2014", "amazon2018", "amazon2023"]


class DataConfig(BaseModel):
    """Where the interactions and item text come from (the prepare stage)."""

    model_config = ConfigDict(extra="forbid")

    format: FormatName = Field("p5", description="Source format of the files under `path`.")
    path: str | None = Field(None, description="Folder with the source files; empty = the bundled Beauty sample.")
    k_core: int | None = Field(None, ge=1, description="k-core threshold (raw Amazon dumps default to 5).")
    max_history: int | None = Field(50, ge=1, description="Keep the last N items of each valid/test history.")


class PipelineConfig(BaseModel):
    """All stages of `deepinterestgr pipeline`; each stage writes under `output_dir` and is skipped when done."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field("runs/quickstart", description="Folder for every artifact (relative to the CWD).")
    data: DataConfig = Field(default_factory=DataConfig)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> PipelineConfig:
        """Read and validate a YAML config; errors name the file and the field."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found; see configs/quickstart.yaml for an example") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, output_dir, ...)")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            errors = err.errors()
            field = ".".join(str(p) for p in errors[0]["loc"])
            more = f" ({len(errors) - 1} more error(s))" if len(errors) > 1 else ""
            raise ConfigError(
                f"{path}: field {field!r}: {errors[0]['msg']} (got {errors[0].get('input')!r}){more}"
            ) from None
