# The simulated board's SPI flash: a LittleFS2 block device backed by a host file.
# Writes go straight to the file, one 256-byte flash page per write() call, so a
# power cut (SIGKILL of the chip) can land between pages of one block program,
# as it can on a real NOR flash. Runs under the MicroPython unix port.
from micropython import const

_PAGE = const(256)
BLOCK_SIZE = const(4096)
# Like the "vfs" partition of a 4 MB ESP32 (partitions-4MiBplus.csv): 2 MiB.
DEFAULT_SIZE = const(0x200000)


_ERASED = b"\xff" * BLOCK_SIZE  # allocated once: a 4 KB allocation per erase fragments a small heap


class FileBlockDevice:
    def __init__(self, path, block_size=BLOCK_SIZE):
        self.f = open(path, "r+b")
        self.f.seek(0, 2)
        self.block_size = block_size
        self.blocks = self.f.tell() // block_size

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * self.block_size + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # Simple interface: the whole block is erased then programmed.
            self.ioctl(6, block)
            offset = 0
        f = self.f
        base = block * self.block_size + offset
        mv = memoryview(buf)
        for i in range(0, len(mv), _PAGE):
            f.seek(base + i)
            f.write(mv[i:i + _PAGE])

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase: NOR flash erases to 0xFF
            f = self.f
            f.seek(arg * self.block_size)
            f.write(_ERASED if self.block_size == BLOCK_SIZE else b"\xff" * self.block_size)
            return 0
        return 0 if op in (1, 2, 3) else None
