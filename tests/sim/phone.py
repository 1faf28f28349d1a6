"""What the tests' phone does besides provisioning: find a board's SoftAP server, peek at its store."""
import time

from tools.console import Console
from tools.prov.transport import HttpTransport


def softap(board, timeout=10):
    """An HTTP transport to the board's SoftAP provisioning server, once it listens."""
    deadline = time.monotonic() + timeout
    while board.softap_port is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return HttpTransport("127.0.0.1", board.softap_port)


def stored(board, record):
    """A record as the board's store holds it (through the serial console)."""
    with Console("socket://127.0.0.1:%d" % board.console.port) as c:
        return c.eval("__import__('firmware.store').store.Store().get(%r)" % record)
