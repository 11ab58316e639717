"""Settings of the GRPO stage: a TRL-style dataclass whose fields carry their help text (also the `grpo` section
of a pipeline YAML). Defaults follow DeepInterestGR where published (KL 0.001, group 8, alpha 0.5, lr 1e-5,
2 epochs); lambda_valid and lambda_pref are not published."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict

from deepinterestgr.recommender.arguments import check

REWARDS = ("exact", "valid", "prefix", "rank", "qarm", "ungated", "interest")


@dataclass
class GRPOArguments:
    """Which rewards, how strong, and how long to train the SFT recommender with GRPO."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: bool = field(default=True, metadata={"help": "Run the stage in `deepinterestgr pipeline`."})
    rewards: list[str] = field(
        default_factory=lambda: ["exact", "valid", "prefix", "qarm"],
        metadata={"help": f"Reward components, from {', '.join(REWARDS)}."},
    )
    lambda_valid: float = field(default=0.1, metadata={"help": "Weight of the valid-SID reward."})
    lambda_pref: float = field(default=0.5, metadata={"help": "Weight of the prefix (LCP / L) reward."})
    alpha: float = field(default=0.5, metadata={"help": "Scale of the QARM quality bonus (and its ungated variant)."})
    lambda_rank: float = field(default=1.0, metadata={"help": "Weight of the rank-aware penalty."})
    lambda_interest: float = field(default=1.0, metadata={"help": "Weight of the v1 interest-aware reward."})
    group_size: int = field(default=8, metadata={"help": "Completions per prompt: its G best SIDs by beam search."})
    prompts_per_step: int = field(default=4, metadata={"help": "Prompts per device per step (x G completions)."})
    epochs: float = field(default=2.0, metadata={"help": "Passes over the GRPO prompts."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    beta: float = field(default=0.001, metadata={"help": "KL coefficient to the SFT (reference) model."})
    loss_type: str = field(default="dapo", metadata={"help": "TRL GRPO loss: grpo, dr_grpo, dapo, ..."})
    constrained_policy: bool = field(
        default=True,
        metadata={"help": "Score completions with the softmax over the catalogue's allowed tokens (rl/trainer.py)."},
    )
    positions: Literal["last", "all"] = field(
        default="last", metadata={"help": "Targets per training sequence: its last item, or every position."}
    )
    max_prompts: int | None = field(default=None, metadata={"help": "Use at most N prompts (random, seeded)."})
    max_history: int = field(default=20, metadata={"help": "Items of history in a prompt."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters only."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    use_vllm: bool = field(default=False, metadata={"help": "TRL's vLLM weight sync (GPU); rollouts stay ours."})
    save_steps: int = field(default=100, metadata={"help": "Steps between resumable checkpoints."})
    logging_steps: int = field(default=10, metadata={"help": "Steps between logged rewards and losses."})
    seed: int = field(default=42, metadata={"help": "Seed of prompt sampling and training."})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rewards) - set(REWARDS))
        check(not unknown, f"unknown reward(s) {', '.join(unknown)}; choose from {', '.join(REWARDS)}")
        check(bool(self.rewards), "choose at least one reward")
        check(self.group_size >= 2, f"group_size must be >= 2 (GRPO compares a group), got {self.group_size}")
        check(min(self.prompts_per_step, self.max_history, self.lora_r) >= 1, "sizes must be >= 1")
        check(self.epochs > 0 and self.learning_rate > 0 and self.beta >= 0, "epochs, learning_rate > 0; beta >= 0")
        check(self.max_prompts is None or self.max_prompts >= 1, "max_prompts must be >= 1")
