"""Training of the RQ-VAE with accelerate (the same code on CPU and GPU), with k-means seeding and resume."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from deepinterestgr.errors import DataError
from deepinterestgr.sid.configuration_rqvae import RQVAEConfig
from deepinterestgr.sid.modeling_rqvae import RQVAEModel
from deepinterestgr.sid.report import sid_quality

STATE_FILE = "trainer_state.json"


@dataclass
class RQVAETrainingArguments:
    """How the RQ-VAE is trained; fields mirror the `quantize` section of a pipeline config."""

    epochs: int = field(default=100, metadata={"help": "Passes over all items."})
    batch_size: int = field(default=1024, metadata={"help": "Items per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    warmup_epochs: int = field(
        default=10, metadata={"help": "Epochs of plain autoencoder training before the codebooks are seeded."}
    )
    kmeans_init: bool = field(default=True, metadata={"help": "Seed each codebook by k-means on its residuals."})
    restart_every: int = field(default=10, metadata={"help": "Epochs between dead-code restarts (0: never)."})
    restart_sample: int = field(
        default=16384, metadata={"help": "Items whose residuals seed restarted codes (colliding ones first)."}
    )
    checkpoint_every: int = field(default=25, metadata={"help": "Epochs between resumable checkpoints (0: never)."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, shuffling, k-means and restarts."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar with the running loss."})

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RQVAETrainingArguments.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} for {self.epochs} epochs")


@dataclass
class RQVAETrainingResult:
    model: RQVAEModel
    codes: np.ndarray  # (n_items, L) before collision suffixes
    report: dict  # sid_quality + losses + wall time
    history: list[dict]


def _as_tensor(name: str, array: np.ndarray | None) -> torch.Tensor | None:
    if array is None:
        return None
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if tensor.dim() != 2:
        raise DataError(f"{name}: expected one vector per item (2-D array), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        rows = (~torch.isfinite(tensor)).any(dim=1).nonzero().squeeze(-1)[:5].tolist()
        raise DataError(f"{name}: NaN or inf in rows {rows}...; fix the embedding stage and re-run it")
    return tensor


@torch.no_grad()
def seed_codebooks(model: RQVAEModel, inputs: tuple[torch.Tensor, ...], *, seed: int) -> None:
    """k-means (scikit-learn) on the latents, then on each level's residuals, as the initial codes."""
    from sklearn.cluster import KMeans  # imported here: it adds ~1 s to `import deepinterestgr`

    k = model.config.codebook_size
    if len(inputs[0]) < k:
        raise DataError(
            f"k-means needs at least codebook_size={k} items, got {len(inputs[0])}; lower codebook_size "
            "(quantize.codebook_size in the config) or add items"
        )
    residual = model.encode(*inputs).cpu().double().numpy()
    for level in model.quantizer.levels:
        kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(residual)
        level.set_codes(torch.from_numpy(kmeans.cluster_centers_).float())
        residual = residual - kmeans.cluster_centers_[kmeans.labels_]


def train_rqvae(
    embeddings: np.ndarray,
    config: RQVAEConfig | None = None,
    args: RQVAETrainingArguments | None = None,
    *,
    image_embeddings: np.ndarray | None = None,
    aux_targets: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
) -> RQVAETrainingResult:
    """Train an RQ-VAE on one embedding per item and return it with the items' codes and a quality report.

    With `checkpoint_dir`, state is saved every `checkpoint_every` epochs and a later call with the same folder
    continues from the last saved epoch.
    """
    started = time.perf_counter()
    args = args or RQVAETrainingArguments()
    text = _as_tensor("embeddings", embeddings)
    config = config or RQVAEConfig(input_dim=text.shape[1])
    image = _as_tensor("image_embeddings", image_embeddings)
    aux = _as_tensor("aux_targets", aux_targets)
    if text.shape[1] != config.input_dim:
        raise DataError(
            f"embeddings have dimension {text.shape[1]} but RQVAEConfig.input_dim is {config.input_dim}; "
            "set input_dim to the encoder's output size"
        )
    set_seed(args.seed)
    model = RQVAEModel(config)
    model._check("image_embeddings", image, config.image_dim)
    tensors = [t for t in (text, image, aux) if t is not None]
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(TensorDataset(*tensors), batch_size=args.batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    core: RQVAEModel = accelerator.unwrap_model(model)

    def split(batch: list[torch.Tensor]) -> dict:
        parts = iter(batch)
        return {
            "embeddings": next(parts),
            "image_embeddings": next(parts) if image is not None else None,
            "aux_targets": next(parts) if aux is not None else None,
        }

    start_epoch, history = 0, []
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if checkpoint_dir and (checkpoint_dir / STATE_FILE).is_file():
        accelerator.load_state(str(checkpoint_dir))
        state = json.loads((checkpoint_dir / STATE_FILE).read_text())
        start_epoch, history = state["epoch"], state["history"]

    device = accelerator.device
    full = [t.to(device) for t in (text, image)] if image is not None else [text.to(device)]
    restart_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    bar = tqdm(range(start_epoch, args.epochs), desc="RQ-VAE", unit="epoch", disable=not args.show_progress)
    for epoch in bar:
        quantize = epoch >= args.warmup_epochs
        if quantize and not bool(core.quantizer.levels[0].initialized):
            core.eval()
            if args.kmeans_init:
                seed_codebooks(core, tuple(full), seed=args.seed)
            else:
                for level in core.quantizer.levels:
                    level.initialized.fill_(True)
        model.train()
        totals: dict[str, float] = {}
        for batch in loader:
            inputs = split(batch)
            if quantize:
                out = model(**inputs)
                loss = out.loss
                parts = {"loss": loss, "reconstruction": out.reconstruction_loss, "commitment": out.commitment_loss}
            else:  # warm-up: the autoencoder alone, so k-means seeds codebooks in a meaningful latent space
                latent = core.encode(inputs["embeddings"], inputs["image_embeddings"])
                target = inputs["embeddings"]
                if inputs["image_embeddings"] is not None:
                    target = torch.cat([target, inputs["image_embeddings"]], dim=-1)
                loss = torch.nn.functional.mse_loss(core.decoder(latent), target)
                parts = {"loss": loss, "reconstruction": loss}
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * len(inputs["embeddings"])
        record = {"epoch": epoch + 1, **{k: v / len(text) for k, v in totals.items()}}
        restart_due = quantize and args.restart_every and (epoch + 1 - args.warmup_epochs) % args.restart_every == 0
        if restart_due and epoch + 1 < args.epochs:  # never restart right before the final assignment
            sample = torch.randperm(len(text), generator=generator)[: args.restart_sample]
            record["restarted"] = core.restart_dead_codes(
                *[t[sample.to(device)] for t in full], epochs=args.restart_every, generator=restart_gen
            )
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", recon=f"{record['reconstruction']:.4f}")
        if checkpoint_dir and args.checkpoint_every and (epoch + 1) % args.checkpoint_every == 0:
            accelerator.save_state(str(checkpoint_dir), safe_serialization=True)
            (checkpoint_dir / STATE_FILE).write_text(json.dumps({"epoch": epoch + 1, "history": history}))

    core.eval()
    with torch.no_grad():
        out = core(*full) if image is None else core(full[0], full[1])
        codes = out.codes.cpu().numpy()
    report = sid_quality(codes, codebook_size=config.codebook_size)
    report.update(
        reconstruction_loss=float(out.reconstruction_loss),
        commitment_loss=float(out.commitment_loss),
        epochs=args.epochs,
        train_seconds=round(time.perf_counter() - started, 2),
        device=str(device),
        arguments=asdict(args),
    )
    return RQVAETrainingResult(core.cpu(), codes, report, history)
