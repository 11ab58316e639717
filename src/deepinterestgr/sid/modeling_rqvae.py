"""RQ-VAE semantic-ID tokenizer: MLP encoder -> L residual codebooks -> MLP decoder.

Our own code because the residual quantizer is where semantic IDs are made: k-means seeding from data, dead-code
restarts and exact nearest-code assignment must be under our control and round-trip bit-exactly. This file
imports only torch, transformers and its configuration, so `trust_remote_code=True` can load a saved folder
without the deepinterestgr package.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_rqvae import RQVAEConfig


@dataclass
class RQVAEOutput(ModelOutput):
    """Losses (for training) and codes (for tokenizing) of one forward pass."""

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    latent: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None


class RQVAEMLP(nn.Module):
    """Linear layers with SiLU (and dropout) between them; no activation after the last."""

    def __init__(self, dims: list[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(nn.SiLU())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class RQVAECMSAFusion(nn.Module):
    """CMSA fusion `e_mm = W_f [e_text; W_v e_img]`, bias-free; starts as the identity on the text half."""

    def __init__(self, input_dim: int, image_dim: int):
        super().__init__()
        self.vision_projection = nn.Linear(image_dim, input_dim, bias=False)  # W_v
        self.fusion = nn.Linear(2 * input_dim, input_dim, bias=False)  # W_f
        self.fusion.identity_on_first_half = True  # read by _init_weights

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([text, self.vision_projection(image)], dim=-1))


class RQVAECodebook(nn.Module):
    """One level of K codes; `initialized` and `usage` are buffers so the training state round-trips."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.embed = nn.Parameter(torch.empty(codebook_size, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("usage", torch.zeros(codebook_size))

    def nearest(self, residual: torch.Tensor) -> torch.LongTensor:
        """Index of the closest code (squared Euclidean) for each row; ties go to the lowest index."""
        distances = (
            residual.pow(2).sum(-1, keepdim=True)
            - 2 * residual @ self.embed.t()
            + self.embed.pow(2).sum(-1).unsqueeze(0)
        )
        return distances.argmin(dim=-1)

    @torch.no_grad()
    def set_codes(self, codes: torch.Tensor) -> None:
        """Seed the codebook (k-means centroids) and mark it initialized."""
        self.embed.copy_(codes.to(self.embed))
        self.initialized.fill_(True)
        self.usage.zero_()


class RQVAEResidualQuantizer(nn.Module):
    """L codebooks; level l quantizes what levels < l left unexplained."""

    def __init__(self, num_levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.levels = nn.ModuleList(RQVAECodebook(codebook_size, dim) for _ in range(num_levels))

    def residuals(self, latent: torch.Tensor) -> tuple[list[torch.Tensor], torch.LongTensor]:
        """The residual entering each level and the chosen codes, without gradients through the choice."""
        residual, inputs, codes = latent, [], []
        for level in self.levels:
            inputs.append(residual)
            index = level.nearest(residual)
            codes.append(index)
            residual = residual - level.embed[index].detach()
        return inputs, torch.stack(codes, dim=-1)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor, torch.Tensor, torch.Tensor]:
        inputs, codes = self.residuals(latent)
        quantized = torch.zeros_like(latent)
        codebook_loss = latent.new_zeros(())
        commitment_loss = latent.new_zeros(())
        for level, residual, index in zip(self.levels, inputs, codes.unbind(-1), strict=True):
            chosen = F.embedding(index, level.embed)  # not embed[index]: its CPU backward sums rows in thread order
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())
            commitment_loss = commitment_loss + F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            if self.training:
                level.usage.index_add_(0, index, torch.ones_like(index, dtype=level.usage.dtype))
        straight_through = latent + (quantized - latent).detach()
        return straight_through, codes, codebook_loss, commitment_loss


class RQVAEPreTrainedModel(PreTrainedModel):
    config_class = RQVAEConfig
    base_model_prefix = "rqvae"
    main_input_name = "embeddings"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and getattr(module, "identity_on_first_half", False):
            dim = module.weight.shape[0]
            init.copy_(module.weight, torch.cat([torch.eye(dim), torch.zeros(dim, module.weight.shape[1] - dim)], 1))
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, RQVAECodebook):
            bound = 1.0 / module.embed.shape[0]
            init.uniform_(module.embed, -bound, bound)


class RQVAEModel(RQVAEPreTrainedModel):
    """Item embedding -> L codes. Train with `deepinterestgr.sid.train_rqvae`; tokenize with `get_codes`."""

    def __init__(self, config: RQVAEConfig):
        super().__init__(config)
        self.fusion = RQVAECMSAFusion(config.input_dim, config.image_dim) if config.image_dim else None
        self.encoder = RQVAEMLP([config.input_dim, *config.hidden_dims, config.latent_dim], config.dropout)
        self.quantizer = RQVAEResidualQuantizer(config.num_levels, config.codebook_size, config.latent_dim)
        target_dim = config.input_dim + (config.image_dim or 0)
        self.decoder = RQVAEMLP([config.latent_dim, *reversed(config.hidden_dims), target_dim], config.dropout)
        self.aux_head = nn.Linear(config.latent_dim, config.aux_dim) if config.aux_dim else None
        self.post_init()

    def _check(self, name: str, tensor: torch.Tensor | None, dim: int | None) -> None:
        if tensor is None:
            if dim is not None and name == "image_embeddings":
                raise ValueError("this RQ-VAE fuses images (config.image_dim is set): pass image_embeddings")
            return
        if dim is None:
            raise ValueError(f"{name} given but the config has no size for it; set it in RQVAEConfig")
        if tensor.dim() != 2 or tensor.shape[-1] != dim:
            raise ValueError(
                f"{name} have shape {tuple(tensor.shape)} but the config expects (batch, {dim}); "
                "embed with the encoder this tokenizer was trained on, or train a new one"
            )
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).any(dim=-1).sum())
            raise ValueError(f"{name} contain NaN or inf in {bad} row(s); fix the embedding stage output")

    def fuse(self, embeddings: torch.Tensor, image_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """The vector that is encoded: the embedding itself, or its CMSA fusion with the image embedding."""
        self._check("embeddings", embeddings, self.config.input_dim)
        self._check("image_embeddings", image_embeddings, self.config.image_dim)
        return embeddings if self.fusion is None else self.fusion(embeddings, image_embeddings)

    def encode(self, embeddings: torch.Tensor, image_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.fuse(embeddings, image_embeddings))

    @torch.no_grad()
    def get_codes(self, embeddings: torch.Tensor, image_embeddings: torch.Tensor | None = None) -> torch.LongTensor:
        """(batch, L) code indices: deterministic nearest-code assignment at every level."""
        _, codes = self.quantizer.residuals(self.encode(embeddings, image_embeddings))
        return codes

    @torch.no_grad()
    def restart_dead_codes(
        self,
        embeddings: torch.Tensor,
        image_embeddings: torch.Tensor | None = None,
        *,
        epochs: int = 1,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Re-seed codes used fewer than `dead_code_threshold` times per epoch over the last `epochs` epochs.

        New codes are drawn from the residuals of rows of this batch whose codes so far (this level included)
        are shared with another row, so spare capacity goes where items collide; from any row when none do.
        Returns how many codes were restarted per level and resets the usage counts.
        """
        inputs, codes = self.quantizer.residuals(self.encode(embeddings, image_embeddings))
        restarted = []
        for depth, (level, residual) in enumerate(zip(self.quantizer.levels, inputs, strict=True)):
            dead = (level.usage < self.config.dead_code_threshold * epochs).nonzero().squeeze(-1)
            if len(dead):
                _, inverse, counts = torch.unique(codes[:, : depth + 1], dim=0, return_inverse=True, return_counts=True)
                crowded = (counts[inverse] > 1).nonzero().squeeze(-1)
                pool = crowded if len(crowded) else torch.arange(len(residual), device=residual.device)
                pick = pool[torch.randint(len(pool), (len(dead),), generator=generator, device=pool.device)]
                level.embed[dead] = residual[pick]
            restarted.append(len(dead))
            level.usage.zero_()
        return restarted

    def forward(
        self,
        embeddings: torch.Tensor,
        image_embeddings: torch.Tensor | None = None,
        aux_targets: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> RQVAEOutput:
        fused_input = self.fuse(embeddings, image_embeddings)
        latent = self.encoder(fused_input)
        quantized, codes, codebook_loss, commitment_loss = self.quantizer(latent)
        reconstruction = self.decoder(quantized)
        target = embeddings if image_embeddings is None else torch.cat([embeddings, image_embeddings], dim=-1)
        reconstruction_loss = F.mse_loss(reconstruction, target)
        loss = reconstruction_loss + codebook_loss + self.config.commitment_beta * commitment_loss
        aux_loss = None
        if aux_targets is not None:
            if self.aux_head is None:
                raise ValueError("aux_targets given but config.aux_dim is not set")
            self._check("aux_targets", aux_targets, self.config.aux_dim)
            aux_loss = F.mse_loss(self.aux_head(quantized), aux_targets)
            loss = loss + self.config.aux_weight * aux_loss
        return RQVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            aux_loss=aux_loss,
            codes=codes,
            reconstruction=reconstruction,
            latent=latent,
            quantized=quantized,
        )


__all__ = ["RQVAEModel", "RQVAEOutput", "RQVAEPreTrainedModel"]
