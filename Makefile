# Two commands for a fresh machine: `make sim` runs the product, `make test` passes the tests.
# Both install what they need first (make setup, idempotent).

PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Espressif's own provisioning client (esp-rainmaker-cli's esp_prov code), for the tests that run
# it unchanged against a simulated board: installed apart from the venv without its CLI's
# dependencies (cloud, camera...), which provisioning does not use; only what it imports.
ESPPROV := $(VENV)/esp-prov/.installed
# The real ESP32 port's API as type stubs (ESP32_GENERIC and its standard library, v1.28), apart
# from the venv: tests/unit/test_port_api.py type-checks the firmware against them.
PORTSTUBS := $(VENV)/esp32-stubs/.installed
SIMDIR  := .sim

.PHONY: setup sim test bench clean mosquitto chip debs

setup: $(STAMP) mosquitto chip $(ESPPROV) $(PORTSTUBS)

# The simulated chip: MicroPython built from source as a 32-bit ESP32 with NimBLE
# (tools/sim/chip/build.py; source from $$MICROPY_SRC, ../shared/micropython or a clone of the
# release tag; cached in ~/.cache/roost, so this is quick after the first build).
chip: $(STAMP) debs
	$(VPY) -m tools.sim.chip.build

# What the chip's build needs from Debian: a C compiler for 32-bit x86 (gcc-multilib), make, patch.
debs:
	@missing=""; \
	test -e /usr/lib32/libc.so -o -e /usr/lib/i386-linux-gnu/libc.so || missing="$$missing gcc-multilib"; \
	command -v make >/dev/null || missing="$$missing make"; \
	command -v patch >/dev/null || missing="$$missing patch"; \
	command -v git >/dev/null || missing="$$missing git"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "make setup: installing$$missing from Debian's packages"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) \
	      || { echo "make setup: apt-get could not install$$missing"; exit 1; }; \
	  else \
	    echo "make setup: the chip's build needs$$missing (Debian/Ubuntu: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV) || { echo "make setup: need python3-venv (apt-get install python3-venv)"; exit 1; }
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

$(ESPPROV): $(STAMP)
	$(VPY) -m pip install -q --no-deps --target $(VENV)/esp-prov esp-rainmaker-cli==1.14.1 future==1.0.0
	$(VPY) -m pip install -q --target $(VENV)/esp-prov requests==2.34.2
	@touch $@

$(PORTSTUBS): $(STAMP)
	$(VPY) -m pip install -q --no-deps --target $(VENV)/esp32-stubs \
	  micropython-esp32-esp32-generic-stubs==1.28.0.post4 micropython-stdlib-stubs==1.28.0.post6
	@touch $@

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
	$(VPY) -m pytest -n auto

bench: setup
	$(VPY) -m tests.bench

clean:
	rm -rf build $(SIMDIR) .pytest_cache
