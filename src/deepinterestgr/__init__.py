"""DeepInterestGR: generative recommendation with intent-enriched semantic IDs."""

from deepinterestgr import sid  # noqa: F401  (registers the RQ-VAE with AutoConfig/AutoModel)
from deepinterestgr.errors import ConfigError, DataError, DeepInterestGRError

__version__ = "0.1.0.dev0"

__all__ = ["ConfigError", "DataError", "DeepInterestGRError", "__version__"]
