"""How much of the simulator's heap figures is its 64-bit word: the heap that the code resident in
a phase takes once imported (.mpy from the filesystem, as `roost deploy` writes it), in the 64-bit
unix port and in a 32-bit MicroPython (the WebAssembly port, wasm32, from npm), as an ESP32's
would be. The hardware modules are replaced by empty classes: only the firmware's code is counted.

Needs node and npm (the package is installed into build/wasm once); without them the rows say so.
"""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools import deploy
from tools.sim.board import micropython_binary

from tests.bench.table import print_table

WASM_PACKAGE = "@micropython/micropython-webassembly-pyscript@1.27.0"
WASM_DIR = deploy.BUILD / "wasm"
# Modules in sys.modules while streaming (firmware, lib and asyncio), and those that provisioning
# with security 1 adds: what a board holds in each phase (tests/sim/lifecycle.py).
PHASES = {
    "streaming": ("asyncio", "log", "backoff", "firmware", "firmware.records", "firmware.store", "firmware.unload",
                  "firmware.board", "firmware.wifi", "firmware.app", "firmware.online", "firmware.telemetry",
                  "firmware.telemetry.senml", "firmware.telemetry.outbox", "firmware.telemetry.sampler",
                  "firmware.telemetry.mqtt_sink", "firmware.cloud", "firmware.cloud.commands", "mqtt",
                  "firmware.cloud.manager"),
    "provisioning, sec1": ("asyncio", "log", "firmware", "firmware.records", "firmware.store", "firmware.unload",
                           "firmware.board", "firmware.wifi", "firmware.app", "firmware.prov", "firmware.prov.errors",
                           "protobuf", "firmware.prov.messages", "x25519", "aes", "firmware.prov.security",
                           "firmware.prov.protocomm", "firmware.prov.endpoints", "firmware.prov.ble",
                           "firmware.prov.manager"),
}
HARDWARE = {  # empty stand-ins, so the firmware's modules import
    "machine": "class Pin:\n    OUT = 1\n    IN = 0\n    PULL_UP = 2\n\n    def __init__(self, *a, **k):\n        pass\n\n\n"
               "class ADC(Pin):\n    pass\n\n\nclass RTC(Pin):\n    pass\n",
    "network": "class WLAN:\n    IF_STA = 0\n    IF_AP = 1\n",
    "bluetooth": "FLAG_READ = 2\nFLAG_WRITE = 8\nFLAG_NOTIFY = 16\n\n\nclass BLE:\n    pass\n\n\n"
                 "class UUID:\n    def __init__(self, v):\n        pass\n",
    "esp32": "class NVS:\n    def __init__(self, ns):\n        pass\n",
    # not built into the wasm port; the unix port's own is found first there
    "cryptolib": "class aes:\n    def __init__(self, *a):\n        pass\n",
}
MEASURE = """
import gc, sys
sys.path[:0] = [%(code)r, %(code)r + "/lib", %(hw)r]
for m in %(hardware)r + ("json", "os", "struct", "time", "random", "binascii", "micropython"):
    __import__(m)
gc.collect()
base = gc.mem_alloc()
for m in %(modules)r:
    __import__(m)
gc.collect()
print("heap", gc.mem_alloc() - base)
"""
NODE = """
import { loadMicroPython } from "%(pkg)s/micropython.mjs";
import fs from "fs";
import path from "path";
const mp = await loadMicroPython({ heapsize: 4 * 1024 * 1024, stdout: (l) => console.log(l) });
function copy(src, dst) {
  mp.FS.mkdir(dst);
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name), d = dst + "/" + e.name;
    if (e.isDirectory()) copy(s, d); else mp.FS.writeFile(d, fs.readFileSync(s));
  }
}
copy(%(code)s, "/code");
copy(%(hw)s, "/hw");
try {
  mp.runPython(fs.readFileSync(%(script)s, "utf8"));
} catch (e) {
  console.log("error: " + e.message);   // node's own report quotes the one-line module whole
}
"""


def _wasm_port():
    """The npm package's folder, installed into build/wasm if needed; None without node/npm."""
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    pkg = WASM_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not (pkg / "micropython.mjs").exists():
        WASM_DIR.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--silent", "--prefix", str(WASM_DIR), WASM_PACKAGE],
                           capture_output=True, text=True, timeout=300)
        if r.returncode:
            return None
    return pkg


def _heap(out):
    for line in out.splitlines():
        if line.startswith("heap "):
            return int(line.split()[1])
    raise RuntimeError("no figure in: %s" % out[-500:])


def measure(modules, code, pkg=None):
    """(64-bit bytes, 32-bit bytes or None) of the heap `modules` take once imported from
    `code` (the .mpy staging folder, deploy.build(mpy=True))."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        hw = d / "hw"
        hw.mkdir()
        for name, text in HARDWARE.items():
            (hw / (name + ".py")).write_text(text)
        args = {"hardware": tuple(HARDWARE), "modules": tuple(modules)}
        unix = d / "unix.py"
        unix.write_text(MEASURE % dict(args, code=str(code), hw=str(hw)))
        r = subprocess.run([micropython_binary(), "-X", "heapsize=4M", str(unix)],
                           capture_output=True, text=True, timeout=60)
        b64 = _heap(r.stdout + r.stderr)
        if pkg is None:
            return b64, None
        wasm = d / "wasm.py"
        wasm.write_text(MEASURE % dict(args, code="/code", hw="/hw"))
        runner = d / "run.mjs"
        runner.write_text(NODE % {"pkg": pkg.as_uri(), "code": json.dumps(str(code)),
                                  "hw": json.dumps(str(hw)), "script": json.dumps(str(wasm))})
        r = subprocess.run(["node", str(runner)], capture_output=True, text=True, timeout=120)
        return b64, _heap(r.stdout)


def run(rows):
    pkg = _wasm_port()
    code = deploy.build(mpy=True)
    for phase, modules in PHASES.items():
        b64, b32 = measure(modules, code, pkg)
        rows.append(("heap: code resident while %s (%d modules), 64-bit unix port" % (phase, len(modules)),
                     "%d" % b64, "B"))
        if b32 is None:
            rows.append(("heap: the same on a 32-bit MicroPython: skipped, needs node and npm", "-", ""))
            continue
        rows.append(("heap: the same, 32-bit MicroPython (wasm32, %s)" % WASM_PACKAGE.rsplit("@", 1)[1],
                     "%d" % b32, "B"))
        rows.append(("heap: the same, 32-bit / 64-bit", "%.2f" % (b32 / b64), ""))


if __name__ == "__main__":
    out = []
    run(out)
    print_table(out)
