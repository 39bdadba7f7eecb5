# make run   : set everything up (idempotent) and start the assistant on the sound card
# make test  : set everything up and run the tests (what CI runs)
# make run-distributed : the same split over a `board` and a `server` dora daemon (docs/distributed.md)
# make demo  : a bundled spoken question through the whole chain, WAV in and WAV out
# make eval  : how often the answers are right on the dev set (tests/data/eval_questions.json)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export RUST_BACKTRACE := 0
APT_PKGS := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox chromium
PYTEST_ARGS ?=

.PHONY: setup apt run run-distributed demo test lint bench bench-sound bench-distributed bench-view bench-streaming eval eval-voice clean sound

setup: apt $(VENV)/.installed $(VENV)/.smart-turn

apt:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo -n "$$p "; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	    || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing); \
	  else \
	    echo "Missing Debian packages. Run: sudo apt-get install -y $$missing"; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q -e '.[server,test]'
	@touch $@

# Smart Turn v3.2 (the end-of-turn model, pipeline/turn/smart_turn.py) ships inside the
# pipecat-ai wheel with its numpy feature extractor; --no-deps brings those files without
# pipecat's dependency tree (numba, aiohttp, ...), which the assistant never imports.
$(VENV)/.smart-turn: $(VENV)/.installed
	$(PIP) install -q --no-deps pipecat-ai==1.14.0
	@touch $@

run: setup
	@if [ "$${VIEW:-true}" != false ]; then \
	  echo "Live view: http://$${VIEW_HOST:-127.0.0.1}:$${VIEW_PORT:-8765}/$${VIEW_TOKEN:+?token=<VIEW_TOKEN>}"; fi
	dora run dataflow.yml

run-distributed: setup
	PYTHONPATH=$${PYTHONPATH:-$(CURDIR)} $(PY) -m pipeline.cluster

demo: setup
	$(PY) -m pipeline.demo

sound: setup
	bash .ci/pulse-setup.sh

test: setup sound
	$(PY) -m ruff check pipeline nodes tests
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check pipeline nodes tests

bench: setup
	$(PY) -m tests.bench

bench-sound: setup sound
	$(PY) -m tests.bench --sound
	$(PY) -m tests.bench_turns_sound

bench-distributed: setup sound
	PYTHONPATH=$${PYTHONPATH:-$(CURDIR)} $(PY) -m tests.bench --sound --turns 4 --distributed 2 --env VIEW_PORT=0

eval: setup
	$(PY) -m tests.eval_answers $(EVAL_ARGS)

eval-voice: setup
	$(PY) -m tests.eval_answers --voice --limit 20 $(EVAL_ARGS)

bench-view: setup sound
	$(PY) -m tests.bench --sound --turns 4 --view-ab 3

bench-streaming: setup
	$(PY) -m tests.bench_streaming

clean:
	rm -rf out build *.egg-info .pytest_cache .ruff_cache
