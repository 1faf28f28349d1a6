# `esp32` for the simulated board: NVS with commit semantics. The supervisor keeps
# the committed namespaces in a file beside the flash image; uncommitted changes
# live in this process and die with it, as they do at a real reset.
import _air
import _simchip

HEAP_DATA = 4
HEAP_EXEC = 1


class NVS:
    def __init__(self, namespace):
        if not 0 < len(namespace) <= 15:
            raise ValueError("namespace")
        self._ns = namespace
        self._pending = {}   # key -> ("i32", n) | ("blob", hex) | None (erase)

    def _get(self, key):
        if key in self._pending:
            v = self._pending[key]
        else:
            v = _air.call("nvs_get", ns=self._ns, key=key).get("value")
            v = tuple(v) if v else None
        if v is None:
            raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
        return v

    def _set(self, key, v):
        if not 0 < len(key) <= 15:
            raise ValueError("key")
        self._pending[key] = v

    def set_i32(self, key, n):
        self._set(key, ("i32", int(n)))

    def get_i32(self, key):
        kind, v = self._get(key)
        if kind != "i32":
            raise OSError(-4355)  # ESP_ERR_NVS_TYPE_MISMATCH
        return v

    def set_blob(self, key, buf):
        if isinstance(buf, str):
            buf = buf.encode()
        self._set(key, ("blob", bytes(buf).hex()))

    def get_blob(self, key, buf):
        kind, v = self._get(key)
        if kind != "blob":
            raise OSError(-4355)
        data = bytes.fromhex(v)
        if len(buf) < len(data):
            raise OSError(-4364)  # ESP_ERR_NVS_INVALID_LENGTH
        buf[: len(data)] = data
        return len(data)

    def erase_key(self, key):
        self._get(key)
        self._pending[key] = None

    def commit(self):
        if self._pending:
            _air.call("nvs_commit", ns=self._ns, changes=self._pending)
            self._pending = {}


def idf_heap_info(capabilities):
    # The simulated IDF heap's data regions (tools/sim/chip/esp32/esp32_ram.c), internal then
    # PSRAM: (total, free, largest free block, least free since boot) each. Executable (IRAM)
    # regions are not simulated: HEAP_EXEC alone answers [].
    if not capabilities & HEAP_DATA:
        return []
    return _simchip.idf_heap(False) + _simchip.idf_heap(True)


_FLASH_PAGE = 4096      # the SPI flash's erase unit (NATIVE_BLOCK_SIZE_BYTES)


class Partition:
    """The board's romfs partition as ports/esp32/esp32_partition.c serves it: the block
    device that `vfs.rom_ioctl(2, 0)` returns and `mpremote romfs deploy` writes. Flash rules:
    an erase sets a page to 0xFF, a write can only clear bits (so writing without erasing
    first corrupts, as on the chip). _air.ROM holds the partition's bytes (read at boot, what
    VfsRom mounts); each change goes to the supervisor, which keeps the partition beside the
    flash image (tools/sim/board.py), so it survives a reset."""

    def ioctl(self, op, arg):
        if op in (1, 2, 3):             # init, deinit, sync: the flash needs none of them
            return 0
        if op == 4:
            return len(_air.ROM) // _FLASH_PAGE
        if op == 5:
            return _FLASH_PAGE
        if op == 6:
            self._erase(arg * _FLASH_PAGE, _FLASH_PAGE)
            return 0
        return None

    def readblocks(self, block, buf, offset=0):
        start = block * _FLASH_PAGE + offset
        self._check(start, len(buf))
        buf[:] = _air.ROM[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        start = block * _FLASH_PAGE
        if offset is None:              # a simple write: the pages it covers are erased first
            self._erase(start, len(buf))
        else:
            start += offset
        self._check(start, len(buf))
        rom = _air.ROM
        for i in range(len(buf)):
            rom[start + i] &= buf[i]
        self._store(start, len(buf))

    def _erase(self, start, n):
        first = start // _FLASH_PAGE * _FLASH_PAGE
        end = (start + n + _FLASH_PAGE - 1) // _FLASH_PAGE * _FLASH_PAGE
        self._check(first, end - first)
        rom = _air.ROM
        for i in range(first, end):
            rom[i] = 0xFF
        self._store(first, end - first)

    def _check(self, start, n):
        if start < 0 or start + n > len(_air.ROM):
            raise OSError(258)          # ESP_ERR_INVALID_ARG: outside the partition

    def _store(self, start, n):
        import binascii
        _air.call("romfs_write", offset=start, data=binascii.hexlify(_air.ROM[start:start + n]).decode())
