"""Unit-test setup: CPython has no MicroPython `cryptolib`, so lib/aes.py gets a fake backed by `cryptography`."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_cryptolib  # noqa: E402

fake_cryptolib.install()


@pytest.fixture
def cloud(tmp_path):
    """A LocalCloud with its Mosquitto (tests/unit/cloud_helpers.start_cloud), stopped after."""
    from cloud_helpers import start_cloud
    c = start_cloud(tmp_path)
    yield c
    c.stop()
