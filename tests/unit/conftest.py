"""Unit-test setup: CPython has no MicroPython `cryptolib`, so lib/aes.py gets a fake backed by `cryptography`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_cryptolib  # noqa: E402

fake_cryptolib.install()
