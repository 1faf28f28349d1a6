# Two commands for a fresh machine: `make sim` runs the product, `make test` passes the tests.
# Both install what they need first (make setup, idempotent).

PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SIMDIR  := .sim

.PHONY: setup sim test bench clean mosquitto

setup: $(STAMP) mosquitto

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV) || { echo "make setup: need python3-venv (apt-get install python3-venv)"; exit 1; }
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Mosquitto is the real MQTT broker the local cloud talks to.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "make setup: installing mosquitto from Debian's packages"; \
	    (apt-get install -y -q mosquitto >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q mosquitto >/dev/null)) \
	      || { echo "make setup: apt-get could not install mosquitto"; exit 1; }; \
	  else \
	    echo "make setup: Mosquitto is missing. Install it (Debian/Ubuntu: sudo apt-get install mosquitto; macOS: brew install mosquitto), then run make again."; \
	    exit 1; \
	  fi; }

sim: setup
	$(VPY) -m tools sim --dir $(SIMDIR)

test: setup
	$(VPY) -m pytest

bench: setup
	$(VPY) -m tests.bench

clean:
	rm -rf build $(SIMDIR) .pytest_cache
