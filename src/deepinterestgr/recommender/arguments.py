"""Settings of the recommender and its SFT: TRL-style dataclasses whose fields carry their help text.

They are also the `sft` section of a pipeline YAML (pydantic validates them there, refusing unknown keys), so
the fields are declared once. Light on imports on purpose: reading a config must not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ConfigDict

from deepinterestgr.errors import ConfigError

SCRATCH = "scratch-llama"
PROMPT_ATTENTION = ("causal", "bidirectional")  # how a prompt's tokens attend to each other
SID_SOFTMAX = ("vocabulary", "catalogue")  # what each SID token is normalised over, in training and beam search
LOSS_MEAN = ("batch", "dataset")  # what a step's summed token loss is divided by


def check(condition: bool, message: str) -> None:
    """Raise a `ConfigError` with `message` unless `condition` holds (argument validation)."""
    if not condition:
        raise ConfigError(message)


@dataclass
class BackboneConfig:
    """Which causal LM generates the SIDs."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    name: str = field(default=SCRATCH, metadata={"help": "`scratch-llama` (from config), a Hub id or a local folder."})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside `name` (e.g. SmolLM2)."})
    hidden_size: int = field(default=128, metadata={"help": "scratch-llama: width."})
    num_layers: int = field(default=2, metadata={"help": "scratch-llama: decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "scratch-llama: attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "scratch-llama: MLP width."})
    dropout: float = field(
        default=0.0,
        metadata={"help": "scratch-llama: dropout of the attention weights (0 scored best on Beauty and the sample)."},
    )
    max_positions: int = field(default=1024, metadata={"help": "scratch-llama: longest prompt + completion."})

    def __post_init__(self) -> None:
        check(min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) >= 1, "sizes must be >= 1")
        check(
            self.hidden_size % self.num_heads == 0,
            f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}",
        )
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class RecommenderSFTArguments:
    """What to train on and how; the `sft` section of a pipeline config."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tasks: dict[str, float] = field(default_factory=lambda: {"sequence": 1.0}, metadata={"help": "Task weights."})
    max_history: int = field(default=20, metadata={"help": "Items of history in prompts."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the task mix."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (cosine schedule)."})
    batch_size: int = field(default=32, metadata={"help": "Examples per device per step."})
    max_length: int = field(default=1024, metadata={"help": "Longest tokenized example kept."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    hidden_dropout: float = field(
        default=0.0, metadata={"help": "Training-only dropout on embeddings and attention/MLP outputs."}
    )
    prompt_attention: str = field(
        default="causal",
        metadata={"help": "`bidirectional`: history tokens attend both ways (prefix LM; needs next_item tasks)."},
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "Label smoothing of the next-token loss (0: plain cross-entropy)."}
    )
    sid_softmax: str = field(
        default="catalogue",
        metadata={
            "help": "`catalogue`: normalise each SID token over the tokens the catalogue allows after its prefix, "
            "in training and in beam search (better on Beauty, and cheap with `suffix: item`); `vocabulary`: TRL's "
            "softmax over the whole vocabulary, as `generate` scores."
        },
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch examples of similar length together (less padding, same data)."}
    )
    loss_mean: str = field(
        default="dataset",
        metadata={
            "help": "`dataset`: each step's summed loss over the mean token count of a step, so every token weighs "
            "the same, as with random batches (better on Beauty); `batch`: over the step's own count (TRL's; with "
            "length-grouped batches a short sequence's tokens then weigh up to 8x more)."
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, ~25% slower (TRL's default)."}
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (+ the SID token rows) only."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    save_steps: int = field(default=200, metadata={"help": "Steps between resumable checkpoints."})
    logging_steps: int = field(default=10, metadata={"help": "Steps between logged losses."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, data order and task sampling."})

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        check(self.epochs > 0 and self.learning_rate > 0, "epochs and learning_rate must be > 0")
        check(min(self.max_history, self.batch_size, self.max_length, self.lora_r) >= 1, "sizes must be >= 1")
        check(0.0 <= self.hidden_dropout < 1.0, f"hidden_dropout must be in [0, 1), got {self.hidden_dropout}")
        check(
            self.prompt_attention in PROMPT_ATTENTION,
            f"prompt_attention must be one of {', '.join(PROMPT_ATTENTION)}, got {self.prompt_attention!r}",
        )
        check(
            self.prompt_attention == "causal" or self.tasks.get("sequence", 0) <= 0,
            "prompt_attention: bidirectional needs one target per example; the `sequence` task makes later items "
            "completion of earlier ones. Use tasks: {next_item: 1.0} (or prompt_attention: causal)",
        )
        check(
            self.sid_softmax in SID_SOFTMAX,
            f"sid_softmax must be one of {', '.join(SID_SOFTMAX)}, got {self.sid_softmax!r}",
        )
        check(self.loss_mean in LOSS_MEAN, f"loss_mean must be one of {', '.join(LOSS_MEAN)}, got {self.loss_mean!r}")
        check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check(
            self.sid_softmax == "vocabulary" or self.label_smoothing == 0.0,
            "label_smoothing needs sid_softmax: vocabulary (TRL smooths over the whole vocabulary)",
        )
        check(self.save_steps >= 1 and self.logging_steps >= 1, "save_steps and logging_steps must be >= 1")
