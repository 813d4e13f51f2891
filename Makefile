# The two commands of the README: `make demo` and `make test`. Both install everything
# they need themselves (virtualenv, Python packages, the local Kafka broker via Maven).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DURATION ?= 180
PYTEST_ARGS ?=


.PHONY: system-deps demo test install lint typecheck unit integration bench kafka-up kafka-down schemas clean

install: $(VENV)/.installed

# native/ is the Rust feature reader (built by maturin with the machine's cargo; crates from crates.io)
$(VENV)/.installed: pyproject.toml native/Cargo.toml native/Cargo.lock native/src/lib.rs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --force-reinstall --no-deps ./native
	$(BIN)/pip install -q -e '.[server,test]'
	touch $@

demo: install
	$(BIN)/watchkeeper demo --duration $(DURATION)

test: install system-deps lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Alertmanager and Prometheus (Debian packages): the Alertmanager notifier's integration
# test, and promtool for the alert rules' tests (tests/unit/test_deploy.py); Chromium opens
# the HTML report headless (tests/unit/report); kcat runs the README's kcat examples
# (tests/integration/test_readme_commands.py); openssl makes the CA and certificates of the
# secured-broker tests (tests/integration/test_secured_broker.py). Their tests skip with a
# reason where they cannot be installed (not root, no apt).
SYSTEM_PACKAGES := prometheus-alertmanager:prometheus-alertmanager promtool:prometheus chromium:chromium kcat:kcat openssl:openssl

system-deps:
	@for pair in $(SYSTEM_PACKAGES); do \
	  command=$${pair%%:*}; package=$${pair#*:}; \
	  command -v $$command >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$package >/dev/null) \
	      || echo "warning: could not install $$package; its tests will be skipped"; \
	  else echo "note: $$package not installed; its tests will be skipped"; fi; \
	done

lint: install
	$(BIN)/ruff check src tests load-tests
	$(BIN)/ruff format --check src tests load-tests
	cargo fmt --manifest-path native/Cargo.toml --check
	cargo clippy --quiet --release --manifest-path native/Cargo.toml -- -D warnings

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

bench: install
	$(BIN)/python load-tests/throughput.py

schemas: install
	$(BIN)/watchkeeper schemas write schemas

kafka-up: install
	$(BIN)/watchkeeper dev kafka up

kafka-down: install
	$(BIN)/watchkeeper dev kafka down

clean:
	rm -rf $(VENV) .watchkeeper .pytest_cache .mypy_cache .ruff_cache
