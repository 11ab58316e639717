"""Pipeline configuration: a YAML file validated by pydantic, so a typo names its field instead of being ignored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender.arguments import RecommenderSFTArguments
from deepinterestgr.rl.arguments import GRPOArguments

FormatName = Literal["p5", "lcrec", "minionerec", "amazon2014", "amazon2018", "amazon2023"]


class DataConfig(BaseModel):
    """Where the interactions and item text come from (the prepare stage)."""

    model_config = ConfigDict(extra="forbid")

    format: FormatName = Field("p5", description="Source format of the files under `path`.")
    path: str | None = Field(None, description="Folder with the source files; empty = the bundled Beauty sample.")
    k_core: int | None = Field(None, ge=1, description="k-core threshold (raw Amazon dumps default to 5).")
    max_history: int | None = Field(50, ge=1, description="Keep the last N items of each valid/test history.")


class BackendSpec(BaseModel):
    """A model that answers mining prompts: local (transformers, on this machine) or served (OpenAI-compatible)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "served"] = Field("local", description="Run the model here, or call an endpoint.")
    model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct", description="Hub id or folder (local); model name (served)."
    )
    gguf_file: str | None = Field(None, description="local: GGUF file inside `model`.")
    base_url: str | None = Field(None, description="served: the endpoint, e.g. http://127.0.0.1:8000/v1.")
    batch_size: int = Field(8, ge=1, description="local: prompts per generate call.")
    concurrency: int = Field(4, ge=1, description="served: requests in flight.")
    timeout: float = Field(60.0, gt=0, description="served: seconds per request.")


class MineConfig(BaseModel):
    """Deep interest mining (the mine stage): captions, intent descriptors, user interests."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Run mine and judge in `deepinterestgr pipeline`.")
    backends: list[BackendSpec] = Field(
        default_factory=lambda: [BackendSpec()], description="One model (DCIM) or several (MLIM, merged)."
    )
    captioner: BackendSpec | None = Field(None, description="An image-text-to-text model for CMSA captions.")
    reasoning: bool = Field(False, description="MLIM chain-of-thought prompts instead of DCIM.")
    bundled: bool = Field(False, description="Use the bundled sample's mined and judged columns.")
    live_items: int = Field(0, ge=0, description="With `bundled`: re-mine this many items live and compare.")
    user_interests: bool = Field(
        False,
        description="Also mine each user's interests from the train split (with `bundled`: the sample's shipped ones).",
    )
    retry_failed: bool = Field(False, description="Ask again the prompts whose stored answers failed.")


class JudgeConfig(BaseModel):
    """Labels of the mined descriptors and item quality q_i (the judge stage)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["grounding", "llm", "classifier"] = Field(
        "grounding", description="grounding (small local models), llm (the 0/1 prompt), classifier (RLDI)."
    )
    backend: BackendSpec | None = Field(None, description="Judge model; empty = the first mining backend.")
    threshold: float = Field(
        1.25, description="grounding: per-token score above which a descriptor is labelled 1 (calibrated for SmolLM2)."
    )
    classifier: str | None = Field(None, description="classifier: folder of a trained RLDI classifier.")


class EmbedConfig(BaseModel):
    """How item text (and interactions) become the vector that is quantized (the embed stage)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="sentence-transformers id or folder; empty = offline MiniLM.")
    batch_size: int = Field(128, ge=1, description="Texts per encoder batch.")
    collaborative: Literal["auto", "on", "off"] = Field(
        "auto", description="Fuse an item embedding learned from train interactions (auto: when text is thin)."
    )
    collaborative_dim: int = Field(128, ge=2, description="Size of the collaborative embedding.")
    collaborative_weight: float = Field(2.0, gt=0, description="Scale of the collaborative part in the fusion.")
    descriptors: Literal["none", "all", "positive"] = Field(
        "positive", description="Mined descriptors in the enriched text: none, all, or those judged 1."
    )


class QuantizeConfig(BaseModel):
    """RQ-VAE shape and training (the quantize stage)."""

    model_config = ConfigDict(extra="forbid")

    num_levels: int = Field(3, ge=1, description="Codes per SID before the suffix.")
    codebook_size: int = Field(256, ge=2, description="Codes per level.")
    suffix: Literal["collision", "item"] = Field(
        "collision",
        description="Suffix codes: only for items that share all level codes (TIGER), or one per item (a free "
        "per-item token: better ranking on a GPU budget, a larger vocabulary; see benchmarks/RESULTS.md).",
    )
    latent_dim: int = Field(64, ge=1, description="Size of the quantized latent.")
    hidden_dims: list[int] = Field(default_factory=lambda: [512, 256, 128], description="Encoder MLP widths.")
    epochs: int = Field(100, ge=1, description="Training epochs.")
    warmup_epochs: int = Field(10, ge=0, description="Autoencoder-only epochs before k-means seeding.")
    batch_size: int = Field(1024, ge=1, description="Items per step.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    seed: int = Field(42, description="Seed of everything random in the stage.")


class EvaluateSection(BaseModel):
    """Full-ranking evaluation after training."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["valid", "test"] = Field("test", description="Which held-out item to rank.")
    num_beams: int = Field(20, ge=1, description="Beam width (top-K needs K <= beams).")
    max_users: int | None = Field(None, ge=1, description="Evaluate only the first N users (quick checks).")
    batch_size: int = Field(32, ge=1, description="Users per beam-search batch.")
    exclude_history: bool = Field(
        False, description="Rank only items outside each user's history (for data where no item repeats)."
    )


class PipelineConfig(BaseModel):
    """All stages of `deepinterestgr pipeline`; each stage writes under `output_dir` and is skipped when done."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field("runs/quickstart", description="Folder for every artifact (relative to the CWD).")
    data: DataConfig = Field(default_factory=DataConfig)
    mine: MineConfig = Field(default_factory=MineConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    sft: RecommenderSFTArguments = Field(default_factory=RecommenderSFTArguments)
    grpo: GRPOArguments = Field(default_factory=GRPOArguments)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)

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
