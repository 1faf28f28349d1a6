# What a real ESP32 does before user code: mount the flash, then boot.py, then
# main.py, then the REPL. Also installs the hardware shims as the built-in modules
# machine, network, bluetooth, esp32 and socket (sys.modules wins over built-ins),
# before the host filesystem disappears: afterwards "/" is the LittleFS image only,
# so `os.listdir("/")` and mpremote see what a board would.
import gc
import os
import sys
import vfs

_here = sys.argv[0].rsplit("/", 1)[0]
sys.path[:0] = [_here, _here + "/../shims"]

import flash  # noqa: E402
import _air  # noqa: E402
import repl  # noqa: E402

for _name in ("machine", "network", "esp32", "socket", "bluetooth"):
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
    # /rom as MicroPython does on boards whose partition table has a romfs partition.
    path = os.getenv("ROOST_ROMFS")
    if not path:
        return 0
    with open(path, "rb") as f:
        _air.ROM = f.read()
    vfs.mount(vfs.VfsRom(_air.ROM), "/rom")
    return len(_air.ROM)


if os.getenv("ROOST_HEAPWATCH"):
    import heapwatch
    heapwatch.start(os.getenv("ROOST_HEAPWATCH"))
_rom_size = _mount_rom()
_mount()
os.chdir("/")
sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"] if _rom_size else ["", ".frozen", "/lib"]
raw = os.getenv("ROOST_REPL") == "raw"
del _here, _name, _mount, _mount_rom
gc.collect()
# The supervisor started us with the board's heap plus ROOST_ALLOWANCE for the simulator's
# own code (shims, REPL), which a real board does not carry. Pin whatever of the allowance
# that code did not use, so the firmware finds the board's heap, no more.
# The ROMFS image is flash on a real board: it lives in the allowance too.
_spare = int(os.getenv("ROOST_ALLOWANCE") or 0) + _rom_size - gc.mem_alloc() - 64
if _spare < 0:
    print("[sim] warning: simulator code exceeds its heap allowance by %d bytes" % -_spare)
_air.BALLAST = bytearray(max(_spare, 0))
gc.collect()
_air.BASELINE = gc.mem_alloc()  # firmware allocations = gc.mem_alloc() - this
del _spare, _rom_size
_run_file("boot.py")
if not raw:
    _run_file("main.py")
repl.run(raw, _main)
