# psi0_ros developer entry points. `make run` and `make test` are the two commands in README.md;
# both run the idempotent set-up first (scripts/setup.sh: venv, ROS 2 wheels, torch, messages).

VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED = 1

.PHONY: setup run test lint format bench constraints clean

setup:
	bash scripts/setup.sh

# The main job: the simulated G1 behind the robot bridge as a live ROS 2 graph, driven by a
# scripted demo through the real command topics (the policy-driven deploy stack comes next).
RUN_ARGS ?= --duration 20 --demo
run: setup
	$(VENV)/bin/psi0 sim $(RUN_ARGS)

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
