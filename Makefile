# agi_bridge — see README.md. Every target is idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/agi-bridge.yaml

.PHONY: install test-env test test-unit lint run demo simulate bench soak clean up down logs smoke \
	docker-engine docker-engine-stop

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# What the end-to-end tests need on the host: Debian packages (baresip, tshark, sox,
# espeak-ng, debootstrap), the Asterisk 22 chroot (built once, then cached) and, for the
# Docker stack test, Debian's docker.io with the Compose/buildx plugins (not started here).
test-env:
	scripts/install-system-deps.sh
	scripts/provision-asterisk-chroot.sh
	scripts/docker-engine.sh install

# The whole suite: unit, integration (real sockets + simulator), e2e (real Asterisk).
test: install test-env
	$(BIN)/python -m pytest

# Fast loop without Asterisk (no root needed).
test-unit: install
	$(BIN)/python -m pytest tests/unit tests/integration tests/simulator

lint: install
	$(BIN)/ruff check agi_bridge tests bench
	$(BIN)/ruff format --check agi_bridge tests bench
	$(BIN)/mypy --strict agi_bridge

# Without OPENAI_API_KEY, `make run` asks for the bundled simulator explicitly (serve
# alone refuses to start without a key: realtime.simulator_without_key is false).
run: install
	AGI_BRIDGE_REALTIME_SIMULATOR_WITHOUT_KEY=true $(BIN)/agi-bridge serve -c $(CONFIG)

demo: install
	$(BIN)/agi-bridge demo -c $(CONFIG)

simulate: install
	$(BIN)/agi-bridge simulate

bench: install
	$(BIN)/python bench/bench_calls.py

# Not in CI: SOAK_CALLS calls at a time for SOAK_MINUTES minutes through one bridge,
# sampling RSS, open files and late frames over time (bench/soak.py).
SOAK_CALLS ?= 20
SOAK_MINUTES ?= 10
soak: install
	$(BIN)/python bench/soak.py --calls $(SOAK_CALLS) --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- Docker (docker/README.md): Asterisk 22 + bridge (+ simulator without OPENAI_API_KEY) ---
# Without OPENAI_API_KEY the Realtime simulator runs as its own service (compose.simulator.yaml).
COMPOSE ?= docker compose -f docker/compose.yaml $(if $(OPENAI_API_KEY),,-f docker/compose.simulator.yaml)

UP_TIMEOUT ?= 180

up:
	$(COMPOSE) up -d --build --wait --wait-timeout $(UP_TIMEOUT)

down:
	docker compose -f docker/compose.yaml -f docker/compose.simulator.yaml --profile smoke down --remove-orphans

logs:
	$(COMPOSE) logs -f --tail=200

# One scripted call from a headless baresip to the agent (docker/softphone/smoke.py).
smoke: up
	$(COMPOSE) --profile smoke build softphone
	$(COMPOSE) --profile smoke run --rm softphone

# No Docker on Debian bookworm? Install and start one (root); -stop undoes it (docker/README.md).
docker-engine:
	scripts/docker-engine.sh start

docker-engine-stop:
	scripts/docker-engine.sh stop
