# The simulated chip's build: the unix port as a 32-bit ESP32_GENERIC look-alike.
# tools/sim/chip/build.py runs `make -C ports/unix VARIANT_DIR=<this folder>`.

MICROPY_FORCE_32BIT = 1

# The ESP32 port runs MicroPython's threads with a GIL (esp32/mpconfigport.h:86).
MICROPY_PY_THREAD = 1
MICROPY_PY_THREAD_GIL = 1

# Not on the chip, or not buildable here: Berkeley DB (not in ../shared), libffi.
MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 0

# The ESP32's file systems: LittleFS v2 (and FAT); no LittleFS v1.
MICROPY_VFS_LFS1 = 0
MICROPY_VFS_LFS2 = 1

# bluetooth: extmod/modbluetooth.c over the NimBLE host, HCI on a pty (MICROPYBTUART).
MICROPY_PY_BLUETOOTH = 1
MICROPY_BLUETOOTH_NIMBLE = 1

# The REPL is tools/sim/chip/repl.py's; readline only serves the unix port's own prompt.
MICROPY_USE_READLINE = 0

FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py

# py/gc.c's split-heap growth (gc_try_add_heap) does arithmetic on a void pointer, which the
# ESP32 port's flags allow and the unix port's -Wpointer-arith does not.
$(BUILD)/py/gc.o: CFLAGS += -Wno-pointer-arith
