"""The simulated chip is MicroPython built from source as an ESP32_GENERIC look-alike
(tools/sim/chip/build.py, variant tools/sim/chip/esp32/): what the firmware can tell apart."""
import json
import re
import subprocess

from mpy import run_mpy
from tools.sim.chip import build

FACTS = r"""
import sys, time, json, hashlib, cryptolib, vfs
facts = {
    "maxsize": sys.maxsize,
    "epoch_year": time.gmtime(0)[0],
    "float_bits": 24 if 1.0 + 2.0 ** -24 == 1.0 and 1.0 + 2.0 ** -23 != 1.0 else 53,
    "sha512": hasattr(hashlib, "sha512"),
    "hashes": sorted(n for n in ("md5", "sha1", "sha256") if hasattr(hashlib, n)),
    "version": list(sys.implementation.version[:3]),
    "mpy": sys.implementation._mpy & 0xFF,
    "build": sys.implementation._build,
    "thread": sys.implementation._thread,
    "lfs2": hasattr(vfs, "VfsLfs2"), "lfs1": hasattr(vfs, "VfsLfs1"),
    "aes_ctr": hasattr(cryptolib, "MODE_CTR"),
}
for name in ("bluetooth", "asyncio", "select", "tls", "ssl", "umqtt.simple", "ntptime", "requests",
             "btree", "ffi"):
    try:
        __import__(name)
        facts[name] = True
    except ImportError:
        facts[name] = False
print(json.dumps(facts))
"""


def test_the_chip_is_a_32_bit_esp32_with_the_2000_epoch_and_single_floats():
    facts = json.loads(run_mpy(FACTS, path=()).strip().splitlines()[-1])
    assert facts["maxsize"] == 2 ** 31 - 1                  # 31-bit small ints, 4-byte words
    assert facts["epoch_year"] == 2000
    assert facts["float_bits"] == 24                        # single precision
    assert facts["sha512"] is False and facts["hashes"] == ["md5", "sha1", "sha256"]
    assert facts["aes_ctr"] is False                        # cryptolib without CTR, as on ESP32
    assert facts["build"] == "esp32" and facts["thread"] == "GIL"
    assert facts["lfs2"] and not facts["lfs1"]
    for present in ("bluetooth", "asyncio", "select", "tls", "ssl", "umqtt.simple", "ntptime", "requests"):
        assert facts[present], present
    assert not facts["btree"] and not facts["ffi"]


def test_mpy_cross_is_the_same_version_as_the_chip():
    facts = json.loads(run_mpy(FACTS, path=()).strip().splitlines()[-1])
    out = subprocess.run([build.mpy_cross(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"MicroPython v(\d+)\.(\d+)\.(\d+).*mpy v(\d+)\.", out)
    assert m, out
    assert [int(x) for x in m.groups()[:3]] == facts["version"] == [1, 28, 0]
    assert int(m.group(4)) == facts["mpy"]


def test_the_build_is_cached_by_source_and_variant(tmp_path, monkeypatch):
    # Same source and variant: the same cache entry; a changed variant file: a new one.
    src = build.source_dir()
    key = build.cache_key(src)
    assert build.cache_key(src) == key
    variant = tmp_path / "esp32"
    variant.mkdir()
    for p in build.VARIANT.iterdir():
        (variant / p.name).write_bytes(p.read_bytes())
    (variant / "mpconfigvariant.h").write_text((variant / "mpconfigvariant.h").read_text() + "\n// changed\n")
    monkeypatch.setattr(build, "VARIANT", variant)
    assert build.cache_key(src) != key


def test_no_source_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPY_SRC", str(tmp_path))
    try:
        build.source_dir()
    except build.BuildError as e:
        assert "not a MicroPython source tree" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("an empty folder was taken for MicroPython's source")
