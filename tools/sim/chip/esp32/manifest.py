# What the simulated chip has in ROM. As ESP32_GENERIC (ports/esp32/boards/manifest.py):
# asyncio and the networking bundle's libraries that run without ESP32 drivers.
include("$(MPY_DIR)/extmod/asyncio")
require("mip")
require("ntptime")
require("ssl")
require("requests")
require("umqtt.simple")
require("umqtt.robust")
require("upysh")

# The simulator's own silicon: the boot ROM (mount, boot.py, main.py, REPL) and the
# shims that stand in for the ESP32's C modules (machine, network, esp32, socket's name
# lookup). Frozen, their code takes no heap, as the chip's C modules take none.
module("rom.py", base_path="..")
module("repl.py", base_path="..")
module("flash.py", base_path="..")
module("heapwatch.py", base_path="..")
module("dhrystone.py", base_path="..")     # the pace calibration's benchmark (tools/sim/pace.py)
for _m in ("_air", "sim_machine", "sim_network", "sim_esp32", "sim_socket", "sim_vfs"):
    module(_m + ".py", base_path="../../shims")
