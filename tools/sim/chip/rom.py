# What a real ESP32 does before user code: mount the flash, then boot.py, then
# main.py, then the REPL. Frozen into the chip (tools/sim/chip/esp32/manifest.py) and run
# as `micropython -m rom`. It installs the hardware shims as the built-in modules machine,
# network, esp32 and socket (sys.modules wins over built-ins); `bluetooth` is the real
# module, NimBLE over HCI to the board's virtual controller (tools/sim/radio.py).
# Afterwards "/" is the LittleFS image only, so `os.listdir("/")` and mpremote see what a
# board would.
import gc
import os
import sys
import vfs

import flash
import _air
import repl

for _name in ("machine", "network", "esp32", "socket", "vfs"):
    sys.modules[_name] = __import__("sim_" + _name)


def _mount():
    bd = flash.FileBlockDevice(os.getenv("ROOST_FLASH"))
    vfs.umount("/")
    try:
        vfs.mount(vfs.VfsLfs2(bd), "/")
        return
    except OSError:
        pass
    # As ports/esp32/modules/_boot.py: format only a blank (erased) flash.
    first = bytearray(flash.BLOCK_SIZE)
    bd.readblocks(0, first)
    if first == b"\xff" * flash.BLOCK_SIZE:
        print("Performing initial setup")
        vfs.VfsLfs2.mkfs(bd)
        vfs.mount(vfs.VfsLfs2(bd), "/")
        with open("/boot.py", "w") as f:  # what inisetup.py leaves on a new board
            f.write("# This file is executed on every boot (including wake-boot from deepsleep)\n"
                    "#import esp\n#esp.osdebug(None)\n#import webrepl\n#webrepl.start()\n")
        return
    while True:
        print("The filesystem appears to be corrupted. If you had important data there, you")
        print("may want to make a flash snapshot to try to recover it. Otherwise, perform")
        print("factory reprogramming of MicroPython firmware (completely erase flash, followed")
        print("by firmware programming).")
        _air.call("power", kind="halt")


# boot.py, main.py and the REPL share one __main__ namespace, as on a board.
_main = {"__name__": "__main__"}


def _run_file(path):
    try:
        os.stat(path)
    except OSError:
        return
    try:
        exec(open(path).read(), _main)
    except SystemExit:
        raise
    except BaseException as e:
        sys.print_exception(e)


def _mount_rom():
    # The ROMFS partition, if this board has one: code that runs from flash, mounted at
    # /rom as py/runtime.c:199 does (extmod/vfs.c:577), errors ignored: an erased partition
    # is simply not mounted.
    path = os.getenv("ROOST_ROMFS")
    if not path:
        return False
    # Read into one buffer of the partition's size: f.read() would grow its buffer as it
    # reads and need twice that for a moment.
    _air.ROM = bytearray(os.stat(path)[6])
    with open(path, "rb") as f:
        f.readinto(_air.ROM)
    try:
        vfs.mount(vfs.VfsRom(_air.ROM), "/rom")
        return True
    except OSError:
        return False


if os.getenv("ROOST_HEAPWATCH"):
    import heapwatch
    heapwatch.start(os.getenv("ROOST_HEAPWATCH"))
_rom_mounted = _mount_rom()
_mount()
os.chdir("/")
# The port's sys.path, then "/rom" and "/rom/lib" appended once the partition mounts (vfs.c:588).
sys.path[:] = ["", ".frozen", "/lib"] + (["/rom", "/rom/lib"] if _rom_mounted else [])
raw = os.getenv("ROOST_REPL") == "raw"
del _name, _mount, _mount_rom, _rom_mounted
gc.collect()
# What the simulator keeps alive from here on (the shims' objects, the REPL's state): heap a
# board's C modules keep too. Heap watching counts the firmware's share above it.
_air.BASELINE = gc.mem_alloc()
_run_file("boot.py")
if not raw:
    _run_file("main.py")
repl.run(raw, _main)
