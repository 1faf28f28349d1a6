"""The crypto and provisioning figures at ESP32 pace, next to the host's (tools/sim/pace.py).

The chip is calibrated on this host (Dhrystone against the ESP32's 1,661/s), then runs the same
work slowed by that factor: the device CPU time a 240 MHz ESP32 would spend, as the simulator
estimates it. Each operation once (crypto_chip.py quick; the security 1 handshake's best of 3)."""
import os
import re
import subprocess

from tools.sim import pace
from tools.sim.board import micropython_binary
from tools.sim.chip import build as chip_build

from tests.bench import crypto

HERE = os.path.dirname(os.path.abspath(__file__))
# crypto_chip.py figures that provisioning and registration spend on the device.
FIGURES = ("x25519_scalar_mult", "srp6a_session", "pbkdf2_sha256_20000_iter", "aes_gcm_decrypt_per_kib",
           "sha512_per_kib")


def handshake(sec, factor, binary=None):
    """bench_sec<sec>.py's handshake figure (ms of device CPU, best of 3) at `factor` on the chip
    (binary: another build, such as the custom one with cmodules/srpmath)."""
    env = dict(os.environ, ROOST_PACE=str(factor or ""), ROOST_BENCH_RUNS="3")
    r = subprocess.run([binary or micropython_binary(), "-X", "heapsize=4M", os.path.join(HERE, "bench_sec%d.py" % sec)],
                       capture_output=True, text=True, env=env, timeout=900)
    m = re.search(r"handshake device CPU[^:]*: ([\d.]+) ms", r.stdout)
    if not m:
        raise RuntimeError("bench_sec%d.py: %s" % (sec, (r.stderr or r.stdout).strip()[-200:]))
    return float(m.group(1))


def run(rows):
    binary = micropython_binary()
    factor = pace.calibrate(binary)
    rows.append(("pace: Dhrystone on the chip at host speed", max(pace.stones(binary) for _ in range(3)),
                 "stones/s"))
    rows.append(("pace: factor to an ESP32 (1,661 stones/s), corrected by a paced run", "%.1f" % factor, "x"))
    rows.append(("pace: Dhrystone on the paced chip", pace.stones(binary, pace=factor, loops=2000), "stones/s"))
    host, _ = crypto.chip(quick=True)
    slow, _ = crypto.chip(quick=True, pace=factor)
    for key in FIGURES:
        value, unit = slow[key]
        rows.append(("at ESP32 pace: " + crypto.LABELS[key], "%.0f" % value if value >= 100 else "%.2f" % value,
                     "%s (host %.2f)" % (unit, host[key][0])))
    rows.append(("at ESP32 pace: security 1 handshake, device CPU", "%.0f" % handshake(1, factor),
                 "ms (host %.2f)" % handshake(1, None)))
    # Security 2 on a stock build (Python bignums) and on the custom one (mbedTLS: cmodules/srpmath).
    # The pace scales mbedTLS's software bignums; an ESP32's RSA accelerator is faster still.
    custom = chip_build.chip_binary(roost=True)
    rows.append(("at ESP32 pace: security 2 handshake, device CPU, stock build", "%.0f" % handshake(2, factor),
                 "ms (host %.2f)" % handshake(2, None)))
    rows.append(("at ESP32 pace: security 2 handshake, device CPU, custom build (srpmath)",
                 "%.0f" % handshake(2, factor, custom), "ms (host %.2f)" % handshake(2, None, custom)))
