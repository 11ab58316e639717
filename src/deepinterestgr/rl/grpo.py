"""GRPO of the SFT recommender with TRL's `GRPOTrainer`, constrained beam rollouts and the SID rewards.

Run as `deepinterestgr grpo --config C.yaml` or `accelerate launch -m deepinterestgr.rl.grpo --config C.yaml`
(one or more processes, CPU or GPU). Checkpoints go to `<out>/checkpoints`; a re-run resumes from the last one.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.mining.quality import quality_column
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tokens import sid_paths
from deepinterestgr.rl.arguments import GRPOArguments
from deepinterestgr.rl.rewards import (
    ExactMatchReward,
    InterestReward,
    PrefixReward,
    QualityBonusReward,
    RankReward,
    SIDReward,
    ValidityReward,
)
from deepinterestgr.rl.rollout import ConstrainedBeamRollout
from deepinterestgr.rl.trainer import ConstrainedGRPOTrainer
from deepinterestgr.sid.semantic_ids import SemanticIDMap


def grpo_dataset(
    train: Dataset,
    recommender: GenerativeRecommender,
    args: GRPOArguments,
    *,
    user_interests: Mapping[str, Sequence[str]] | None = None,
) -> Dataset:
    """Prompts (history SIDs) with their `target` item, from the train split (`user_id`, `item_ids`); with
    `user_interests`, an `interests` column for the interest-aware reward."""
    rows: list[dict] = []
    for user, seq in zip(train["user_id"], train["item_ids"], strict=True):
        targets = range(1, len(seq)) if args.positions == "all" else range(len(seq) - 1, len(seq))
        for t in targets:
            if t < 1:
                continue
            row = {"prompt": recommender.prompts([seq[max(0, t - args.max_history) : t]])[0], "target": seq[t]}
            if user_interests is not None:
                row["interests"] = list(user_interests.get(user, []))
            rows.append(row)
    if not rows:
        raise DataError("GRPO: no training sequence has two items or more")
    if args.max_prompts is not None and len(rows) > args.max_prompts:
        rows = random.Random(args.seed).sample(rows, args.max_prompts)
    return Dataset.from_list(rows)


def _item_quality(items: Dataset) -> dict[str, float]:
    if "quality" in items.column_names:
        return dict(zip(items["item_id"], items["quality"], strict=True))
    if "descriptor_labels" in items.column_names:
        return dict(zip(items["item_id"], quality_column(items), strict=True))
    raise DataError(
        "reward qarm/ungated needs item quality (a `quality` or `descriptor_labels` column in the items): "
        "run `deepinterestgr judge`, or drop qarm/ungated from grpo.rewards"
    )


def build_rewards(args: GRPOArguments, sid_map: SemanticIDMap, items: Dataset) -> tuple[list[SIDReward], list[float]]:
    """The reward callables named in `args.rewards` and their weights, so that their weighted sum is R."""
    built: dict[str, tuple[SIDReward, float]] = {}
    for name in args.rewards:
        if name == "exact":
            built[name] = (ExactMatchReward(sid_map), 1.0)
        elif name == "valid":
            built[name] = (ValidityReward(sid_map), args.lambda_valid)
        elif name == "prefix":
            built[name] = (PrefixReward(sid_map), args.lambda_pref)
        elif name == "rank":
            built[name] = (RankReward(sid_map, group_size=args.group_size), args.lambda_rank)
        elif name in ("qarm", "ungated"):
            reward = QualityBonusReward(sid_map, _item_quality(items), alpha=args.alpha, gated=name == "qarm")
            built[name] = (reward, 1.0)
        else:  # interest
            if "descriptor_labels" not in items.column_names:
                raise DataError("reward interest needs judged descriptors: run `deepinterestgr mine` and `judge`")
            descriptors = dict(zip(items["item_id"], items["descriptors"], strict=True))
            labels = dict(zip(items["item_id"], items["descriptor_labels"], strict=True))
            built[name] = (InterestReward(sid_map, descriptors, labels), args.lambda_interest)
    return [r for r, _ in built.values()], [w for _, w in built.values()]


def trl_config(args: GRPOArguments, output_dir: Path, *, completion_length: int) -> GRPOConfig:
    """TRL settings; CPU when no GPU is present (TRL defaults to bf16 and GPU)."""
    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.prompts_per_step * args.group_size,
        num_generations=args.group_size,
        max_completion_length=completion_length,
        beta=args.beta,
        loss_type=args.loss_type,
        disable_dropout=True,  # on-policy log-probabilities must not depend on dropout masks
        gradient_checkpointing=False,  # TRL turns it on by default; SID completions are a handful of tokens
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=1,
        report_to=[],
        seed=args.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_vllm=args.use_vllm,
        dataloader_num_workers=0,
    )


@dataclass
class GRPOResult:
    recommender: GenerativeRecommender  # LoRA merged into the weights
    log_history: list[dict]  # the trainer's logged rewards (per component), KL, losses, ...


def train_grpo(
    sft_model: str | Path,
    train: Dataset,
    items: Dataset,
    args: GRPOArguments,
    output_dir: str | Path,
    *,
    user_interests: Mapping[str, Sequence[str]] | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> GRPOResult:
    """GRPO of a saved SFT recommender (folder or Hub id; it is also the KL reference) on the train split."""
    if "interest" in args.rewards and user_interests is None:
        raise DataError(
            "reward interest needs the users' mined interests (user_interests): run `deepinterestgr mine` with "
            "mine.user_interests: true, or drop interest from grpo.rewards"
        )
    output_dir = Path(output_dir)
    start = GenerativeRecommender.from_pretrained(sft_model)
    if start.prompt_attention != "causal":
        raise ConfigError(
            f"{sft_model}: GRPO scores completions with TRL's causal forward, but this recommender was trained with "
            f"prompt_attention={start.prompt_attention!r}; run its SFT with prompt_attention: causal to add GRPO"
        )
    if start.sid_softmax == "catalogue" and not args.constrained_policy:
        raise ConfigError(
            f"{sft_model} was trained with sid_softmax: catalogue, so its full-vocabulary log-probabilities mean "
            "nothing; keep grpo.constrained_policy: true"
        )
    tokenizer, sid_map = start.tokenizer, start.sid_map
    dataset = grpo_dataset(train, start, args, user_interests=user_interests)
    rewards, weights = build_rewards(args, sid_map, items)
    config = trl_config(args, output_dir / "checkpoints", completion_length=start.trie.depth)
    config.reward_weights = weights
    rollout = ConstrainedBeamRollout(
        start.trie, sid_paths(sid_map, tokenizer), tokenizer, group_size=args.group_size, sid_softmax=start.sid_softmax
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, target_modules="all-linear",
            task_type="CAUSAL_LM",
        )  # fmt: skip
    trainer_class, extra = (
        (ConstrainedGRPOTrainer, {"trie": start.trie}) if args.constrained_policy else (GRPOTrainer, {})
    )
    trainer = trainer_class(
        model=start.model,  # loaded from `sft_model`: TRL builds the reference model from the same place
        reward_funcs=rewards,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout,
        peft_config=peft_config,
        callbacks=callbacks,
        **extra,
    )
    resume = any((output_dir / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if args.lora:
        trained = trained.merge_and_unload()
    recommender = GenerativeRecommender(
        trained, tokenizer, sid_map, max_history=start.max_history, templates=start.templates,
        sid_softmax=start.sid_softmax,
    )  # fmt: skip
    return GRPOResult(recommender, trainer.state.log_history)


def main() -> None:
    """`accelerate launch -m deepinterestgr.rl.grpo --config C.yaml`: the grpo stage of a pipeline."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_grpo

    parser = argparse.ArgumentParser(description="GRPO stage of a deepinterestgr pipeline config")
    parser.add_argument("--config", required=True)
    cli = parser.parse_args()
    config = PipelineConfig.from_yaml(cli.config)
    out = Path(config.output_dir)
    run_grpo(out / "prepared", out / "sid", out / "sft", out / "grpo", config.grpo)


if __name__ == "__main__":
    main()
