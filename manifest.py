# roost frozen into a MicroPython firmware: its code runs from flash and takes no heap, the
# leanest way to run it on an ESP32 without PSRAM (docs/real-board.md, "Frozen build").
#
#   git clone -b v1.28.0 https://github.com/micropython/micropython && cd micropython
#   make -C mpy-cross
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/roost/manifest.py \
#       USER_C_MODULES=/path/to/roost/cmodules/micropython.cmake submodules all
#
# then `roost flash` the build's firmware.bin and `roost deploy --frozen` (boot.py, main.py and
# the factory config; no code in the filesystem, where it would shadow the frozen modules).
# USER_C_MODULES adds srpmath (security 2's bignums and SHA-512 in mbedTLS, on the ESP32's
# accelerators); without it the firmware does them in Python, about 7 times slower.
#
# roost_only=True (the simulator's frozen chip, tools/sim/chip/build.py): roost's code alone,
# for a port whose own frozen modules another manifest brings.
if not options.roost_only:
    include("$(PORT_DIR)/boards/manifest.py")   # what ESP32_GENERIC freezes: asyncio, networking
package("firmware")
freeze("lib")
