"""SFT of the generative recommender with TRL's `SFTTrainer` (completion-only loss, optional LoRA).

Run as `deepinterestgr sft --config C.yaml` or `accelerate launch -m deepinterestgr.recommender.sft --config C.yaml`
(one or more processes, CPU or GPU). Checkpoints go to `<out>/checkpoints`; a re-run resumes from the last one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, TrainerCallback
from trl import SFTConfig, SFTTrainer

from deepinterestgr.recommender.backbone import BackboneConfig, load_backbone
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tasks import PromptTemplates, build_sft_dataset
from deepinterestgr.recommender.tokens import add_sid_tokens
from deepinterestgr.sid.semantic_ids import SemanticIDMap


@dataclass
class RecommenderSFTArguments:
    """What to train on and how; the `sft` section of a pipeline config."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tasks: dict[str, float] = field(default_factory=lambda: {"sequence": 1.0}, metadata={"help": "Task weights."})
    max_history: int = field(default=20, metadata={"help": "Items of history in prompts."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the task mix."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (cosine schedule)."})
    batch_size: int = field(default=32, metadata={"help": "Examples per device per step."})
    max_length: int = field(default=1024, metadata={"help": "Longest tokenized example kept."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (+ the SID token rows) only."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    save_steps: int = field(default=200, metadata={"help": "Steps between resumable checkpoints."})
    logging_steps: int = field(default=10, metadata={"help": "Steps between logged losses."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, data order and task sampling."})


def trl_config(args: RecommenderSFTArguments, output_dir: Path) -> SFTConfig:
    """TRL settings; CPU when no GPU is present (TRL defaults to bf16 and GPU)."""
    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=args.weight_decay,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        completion_only_loss=True,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=1,
        report_to=[],
        seed=args.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        dataloader_num_workers=0,
    )


def with_lora(model: PreTrainedModel, args: RecommenderSFTArguments, sid_token_ids: list[int]) -> PreTrainedModel:
    """LoRA (peft) on every linear layer; the SID token rows of the (possibly tied) embedding train in full.

    peft's `trainable_token_indices` would be the natural tool, but its wrapper of a tied output head breaks TRL's
    fused LM-head loss (no `bias` attribute; peft 0.21 / TRL 1.16), so the embedding stays a plain parameter whose
    gradient is masked to the SID rows. AdamW leaves rows with zero gradient unchanged when weight decay is 0,
    which LoRA training uses.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    weight = peft_model.get_input_embeddings().weight
    rows = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    rows[sid_token_ids] = 1.0
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * rows)
    return peft_model


@dataclass
class SFTResult:
    recommender: GenerativeRecommender  # LoRA merged into the weights
    log_history: list[dict]  # the trainer's logged losses, learning rates, ...


def train_recommender(
    train_sequences: list[list[str]],
    items: Dataset,
    sid_map: SemanticIDMap,
    args: RecommenderSFTArguments,
    output_dir: str | Path,
    *,
    callbacks: list[TrainerCallback] | None = None,
) -> SFTResult:
    """Fine-tune (or train from scratch) a causal LM to generate next-item SIDs (`callbacks` go to the trainer,
    e.g. a validation check at each epoch end)."""
    output_dir = Path(output_dir)
    model, tokenizer = load_backbone(args.backbone, seed=args.seed)
    add_sid_tokens(model, tokenizer, sid_map)
    dataset = build_sft_dataset(
        train_sequences, items, sid_map, tasks=args.tasks, max_history=args.max_history, seed=args.seed
    )
    config = trl_config(args, output_dir / "checkpoints")
    if args.lora:
        model = with_lora(model, args, tokenizer.convert_tokens_to_ids(sid_map.vocabulary()))
        config.weight_decay = 0.0
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    resume = any((output_dir / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    trained = trainer.model
    if args.lora:
        trained = trained.merge_and_unload()
    recommender = GenerativeRecommender(
        trained, tokenizer, sid_map, max_history=args.max_history, templates=PromptTemplates()
    )
    return SFTResult(recommender, trainer.state.log_history)


def main() -> None:
    """`accelerate launch -m deepinterestgr.recommender.sft --config C.yaml`: the sft stage of a pipeline."""
    from deepinterestgr.config import PipelineConfig
    from deepinterestgr.stages import run_sft

    parser = argparse.ArgumentParser(description="SFT stage of a deepinterestgr pipeline config")
    parser.add_argument("--config", required=True)
    cli = parser.parse_args()
    config = PipelineConfig.from_yaml(cli.config)
    out = Path(config.output_dir)
    run_sft(out / "prepared", out / "sid", out / "sft", config.sft)


if __name__ == "__main__":
    main()
