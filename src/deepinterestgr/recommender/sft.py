"""SFT of the generative recommender with TRL's `SFTTrainer` (completion-only loss, optional LoRA).

Run as `deepinterestgr sft --config C.yaml` or `accelerate launch -m deepinterestgr.recommender.sft --config C.yaml`
(one or more processes, CPU or GPU). Checkpoints go to `<out>/checkpoints`; a re-run resumes from the last one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from deepinterestgr.recommender.arguments import RecommenderSFTArguments
from deepinterestgr.recommender.backbone import load_backbone
from deepinterestgr.recommender.catalogue_loss import CatalogueSFTTrainer
from deepinterestgr.recommender.constrained import SIDTrie
from deepinterestgr.recommender.dropout import residual_dropout
from deepinterestgr.recommender.epoch_sampler import with_epoch_seeded_grouping
from deepinterestgr.recommender.loss_mean import with_dataset_token_mean
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.prefix_lm import PrefixLMCollator, prompt_attention_hook
from deepinterestgr.recommender.tasks import PromptTemplates, build_sft_dataset
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_paths
from deepinterestgr.sid.semantic_ids import SemanticIDMap


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
        label_smoothing_factor=args.label_smoothing,
        per_device_train_batch_size=args.batch_size,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        max_length=args.max_length,
        completion_only_loss=True,
        gradient_checkpointing=args.gradient_checkpointing,
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


class SIDRowsCheckpoint(TrainerCallback):
    """With LoRA the SID rows of the embedding train outside the adapter, so peft's checkpoints lack them: save
    them beside each checkpoint, and put them back (`restore`) before a run resumes from one."""

    FILE = "sid_token_rows.safetensors"

    def __init__(self, weight: torch.Tensor, rows: list[int]):
        self.weight, self.rows = weight, torch.tensor(rows, dtype=torch.long)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_file({"rows": self.weight.detach()[self.rows].cpu().contiguous()}, str(folder / self.FILE))
        return control

    def restore(self, checkpoint: Path) -> None:
        saved = load_file(str(checkpoint / self.FILE))["rows"]
        with torch.no_grad():
            self.weight[self.rows.to(self.weight.device)] = saved.to(self.weight.device, self.weight.dtype)


def sft_trainer_class(
    args: RecommenderSFTArguments, model: PreTrainedModel, tokenizer, sid_map: SemanticIDMap
) -> tuple[type[SFTTrainer], dict]:
    """The trainer class `args` ask for (TRL's, or our catalogue loss; with the dataset token mean mixed in; its
    length-grouped batches seeded per epoch, so that a resumed run replays them) and the extra keyword arguments
    it takes."""
    trainer_class, extra = SFTTrainer, {}
    if args.sid_softmax == "catalogue":
        trie = SIDTrie(sid_paths(sid_map, tokenizer), vocab_size=model.get_input_embeddings().weight.shape[0])
        trainer_class, extra = CatalogueSFTTrainer, {"trie": trie}
    if args.loss_mean == "dataset":
        trainer_class = with_dataset_token_mean(trainer_class)
    return with_epoch_seeded_grouping(trainer_class), extra


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
    callbacks = list(callbacks or [])
    rows_checkpoint = None
    if args.lora:
        sid_rows = tokenizer.convert_tokens_to_ids(sid_map.vocabulary())
        model = with_lora(model, args, sid_rows)
        config.weight_decay = 0.0
        rows_checkpoint = SIDRowsCheckpoint(model.get_input_embeddings().weight, sid_rows)
        callbacks.append(rows_checkpoint)
    bidirectional = args.prompt_attention == "bidirectional"
    collator = PrefixLMCollator(DataCollatorForLanguageModeling(tokenizer.pad_token_id)) if bidirectional else None
    trainer_class, extra = sft_trainer_class(args, model, tokenizer, sid_map)
    trainer = trainer_class(
        model=model,
        args=config,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        **extra,
    )
    last = get_last_checkpoint(str(output_dir / "checkpoints")) if (output_dir / "checkpoints").is_dir() else None
    if last and rows_checkpoint is not None:
        rows_checkpoint.restore(Path(last))
    with residual_dropout(trainer.model, args.hidden_dropout), prompt_attention_hook(trainer.model):
        trainer.train(resume_from_checkpoint=last)
    trained = trainer.model
    if args.lora:
        trained = trained.merge_and_unload()
    recommender = GenerativeRecommender(
        trained, tokenizer, sid_map, max_history=args.max_history, templates=PromptTemplates(),
        prompt_attention=args.prompt_attention, sid_softmax=args.sid_softmax,
    )  # fmt: skip
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
