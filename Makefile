# psi0_ros developer entry points. `make run` and `make test` are the two commands in README.md;
# both run the idempotent set-up first (scripts/setup.sh: venv, ROS 2 wheels, torch, messages).

VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED = 1

.PHONY: setup run test lint format bench constraints clean

setup:
	bash scripts/setup.sh

# The main job (docs/main_job.md): scripted demos on the simulated G1 -> psi0 convert -> stage-3
# training of a small Psi0 -> closed-loop evaluation through the deploy graph -> runs/demo/report.md.
# Steps are cached by their inputs: a second run goes straight to evaluation.
RUN_ARGS ?=
run: setup
	$(VENV)/bin/psi0 demo $(RUN_ARGS)

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

BENCHMARKS ?= policy convert sim rtc train
bench: setup
	for b in $(BENCHMARKS); do $(VENV)/bin/psi0 bench $$b --json bench-results/$$b.json || exit 1; done

constraints: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.new && echo "review constraints.new, then move it over constraints.txt"

clean:
	rm -rf build install log
