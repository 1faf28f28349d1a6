"""The firmware against the real ESP32 port's API, statically: mypy with the ESP32_GENERIC
stubs (PyPI micropython-esp32-esp32-generic-stubs and micropython-stdlib-stubs, v1.28, which
`make setup` installs into .venv/esp32-stubs) in place of CPython's standard library. A module,
function, method or argument the real port lacks fails here, even where the simulator's shims
would accept it. Only such errors are asked for: the firmware is not annotated, so the checks
about Python typing itself (Optional handling, inferred variable types...) are off."""
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / ".venv" / "esp32-stubs"
# Kept: attr-defined, name-defined, call-arg, arg-type, call-overload, import-not-found...
OFF = ("var-annotated", "union-attr", "assignment", "misc", "operator", "index", "import-untyped",
       "return-value", "has-type", "no-redef", "valid-type", "override", "func-returns-value")


def check(tmp_path, *targets):
    if not (STUBS / "machine.pyi").exists():
        pytest.fail("the ESP32 port's stubs are not installed: run `make setup`")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\npython_version = 3.11\ncustom_typeshed_dir = %s\nmypy_path = %s:%s\n"
                      "follow_imports = silent\nno_site_packages = True\ncache_dir = %s\n"
                      "disable_error_code = %s\n"
                      % (STUBS, STUBS, ROOT / "lib", tmp_path / "cache", ", ".join(OFF)))
    out, err, _ = api.run(["--config-file", str(config), "--no-error-summary", "--hide-error-context",
                           *map(str, targets)])
    # The stubs have a few errors of their own (machine.pyi, _mpy_shed): not the firmware's.
    return [line for line in (out + err).splitlines()
            if ": error:" in line and STUBS not in Path(line.split(":")[0]).resolve().parents]


def test_the_firmware_calls_only_what_the_esp32_port_has(tmp_path):
    errors = check(tmp_path, ROOT / "firmware", ROOT / "lib", ROOT / "boot.py", ROOT / "main.py")
    assert errors == [], "calls the real ESP32 port does not have:\n" + "\n".join(errors)


def test_the_check_bites(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import hashlib, machine, network, time\n"
                   "machine.Pin(2).blink()\n"                  # no such method
                   "network.WLAN(network.STA_IF).connect('x', 'y', timeout=5)\n"   # no such argument
                   "hashlib.sha512(b'')\n"                     # not on the ESP32
                   "time.monotonic()\n")                       # CPython's, not MicroPython's
    errors = check(tmp_path, bad)
    assert [int(e.split(":")[1]) for e in errors] == [2, 3, 4, 5], errors
