"""A stand-in for MicroPython's `cryptolib` under CPython, backed by the `cryptography` package.

It copies the behaviour of the real module (micropython extmod/modcryptolib.c) that lib/ relies on:
- `aes(key, mode, IV=None)`: mode 1 = ECB, mode 2 = CBC (IV required); keys of 16 or 32 bytes only.
- `encrypt(in_buf, out_buf=None)`: any multiple of 16 bytes (ECB loops over the blocks); CBC chains
  across calls; with out_buf the result is written there and out_buf is returned.
- one object cannot both encrypt and decrypt ("can't encrypt & decrypt").
Everything else (CTR mode 6, 24-byte keys) is refused, as on the ESP32 build.
"""
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ECB = 1
_CBC = 2


class aes:  # noqa: N801 - same name as MicroPython's type
    def __init__(self, key, mode, IV=None):  # noqa: N803
        key = bytes(key)
        if len(key) not in (16, 32):
            raise ValueError("key")
        if mode == _ECB:
            cipher = Cipher(algorithms.AES(key), modes.ECB())
        elif mode == _CBC:
            if IV is None or len(IV) != 16:
                raise ValueError("IV")
            cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(IV)))
        else:
            raise ValueError("mode")
        self._cipher = cipher
        self._ctx = None
        self._dir = None

    def _process(self, direction, in_buf, out_buf):
        if self._dir is None:
            self._dir = direction
            self._ctx = self._cipher.encryptor() if direction == "enc" else self._cipher.decryptor()
        elif self._dir != direction:
            raise ValueError("can't encrypt & decrypt")
        data = bytes(in_buf)
        if len(data) % 16:
            raise ValueError("blksize % 16")
        res = self._ctx.update(data)
        if out_buf is None:
            return res
        if len(out_buf) < len(res):
            raise ValueError("output too small")
        memoryview(out_buf)[:len(res)] = res
        return out_buf

    def encrypt(self, in_buf, out_buf=None):
        return self._process("enc", in_buf, out_buf)

    def decrypt(self, in_buf, out_buf=None):
        return self._process("dec", in_buf, out_buf)


def install():
    """Make `import cryptolib` find this module (only if no real one is present)."""
    sys.modules.setdefault("cryptolib", sys.modules[__name__])
