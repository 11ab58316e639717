"""Configuration of the RQ-VAE semantic-ID tokenizer."""

from __future__ import annotations

from transformers import PretrainedConfig


class RQVAEConfig(PretrainedConfig):
    r"""Configuration of [`RQVAEModel`]: an MLP autoencoder whose latent is quantized by residual codebooks.

    Args:
        input_dim (`int`, *optional*, defaults to 384):
            Size of the item embedding that is quantized (text, or text fused with collaborative signal).
        hidden_dims (`list[int]`, *optional*, defaults to `[512, 256, 128]`):
            Widths of the encoder MLP; the decoder mirrors them.
        latent_dim (`int`, *optional*, defaults to 64):
            Size of the quantized latent.
        num_levels (`int`, *optional*, defaults to 3):
            Number of residual codebooks L, i.e. codes per semantic ID before the collision suffix.
        codebook_size (`int`, *optional*, defaults to 256):
            Codes per codebook K.
        commitment_beta (`float`, *optional*, defaults to 0.25):
            Weight of the commitment loss ||z - sg[e]||^2 against the codebook loss ||sg[z] - e||^2.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout between MLP layers.
        image_dim (`int`, *optional*):
            When set, the model also takes an image embedding of this size and fuses it CMSA-style before encoding:
            `e_vis = W_v e_img`, `e_mm = W_f [e_text; e_vis]`, both bias-free; the decoder reconstructs
            `[e_text; e_img]`, so the fusion is trained by the reconstruction loss.
        aux_dim (`int`, *optional*):
            When set, a linear head reconstructs an auxiliary target of this size (the DCIM descriptor embedding)
            from the quantized latent.
        aux_weight (`float`, *optional*, defaults to 0.5):
            Weight of the auxiliary reconstruction loss.
        dead_code_threshold (`float`, *optional*, defaults to 1.0):
            A code chosen fewer times than this per epoch (on average over a restart window) is re-seeded from
            the residual of an item that shares its codes with another item.
    """

    model_type = "deepinterestgr_rqvae"

    def __init__(
        self,
        input_dim: int = 384,
        hidden_dims: list[int] | None = None,
        latent_dim: int = 64,
        num_levels: int = 3,
        codebook_size: int = 256,
        commitment_beta: float = 0.25,
        dropout: float = 0.0,
        image_dim: int | None = None,
        aux_dim: int | None = None,
        aux_weight: float = 0.5,
        dead_code_threshold: float = 1.0,
        **kwargs,
    ):
        hidden_dims = [512, 256, 128] if hidden_dims is None else list(hidden_dims)
        for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim), ("num_levels", num_levels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RQVAEConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(codebook_size, int) or codebook_size < 2:
            raise ValueError(f"RQVAEConfig.codebook_size must be an integer >= 2, got {codebook_size!r}")
        if any(not isinstance(h, int) or h < 1 for h in hidden_dims):
            raise ValueError(f"RQVAEConfig.hidden_dims must be positive integers, got {hidden_dims!r}")
        for name, value in (("image_dim", image_dim), ("aux_dim", aux_dim)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"RQVAEConfig.{name} must be a positive integer or None, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"RQVAEConfig.dropout must be in [0, 1), got {dropout!r}")
        if commitment_beta < 0 or aux_weight < 0 or dead_code_threshold < 0:
            raise ValueError("RQVAEConfig.commitment_beta, aux_weight and dead_code_threshold must be >= 0")
        self.input_dim = input_dim
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.commitment_beta = commitment_beta
        self.dropout = dropout
        self.image_dim = image_dim
        self.aux_dim = aux_dim
        self.aux_weight = aux_weight
        self.dead_code_threshold = dead_code_threshold
        super().__init__(**kwargs)


__all__ = ["RQVAEConfig"]
