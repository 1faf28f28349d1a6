# `vfs` for the simulated board: the built-in module (mount, VfsLfs2, VfsRom, ...) and
# rom_ioctl as the ESP32 port has it (ports/esp32/esp32_partition.c:340): one segment, the
# romfs partition, if the board's partition table has one (partitions-4MiB-romfs.csv);
# otherwise none. mpremote's `romfs query|deploy` and `roost deploy --romfs --port` use it.
from vfs import *  # noqa: F401,F403 - the built-in module's names, unchanged
import _air

_EINVAL = 22


def rom_ioctl(op, *args):
    present = _air.ROM is not None      # rom.py read the partition at boot, if there is one
    if op == 1:                         # MP_VFS_ROM_IOCTL_GET_NUMBER_OF_SEGMENTS
        return 1 if present else 0
    if op == 2 and present:             # MP_VFS_ROM_IOCTL_GET_SEGMENT
        import sim_esp32
        return sim_esp32.Partition()
    return -_EINVAL
