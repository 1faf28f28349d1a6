"""What the tests' phone does: provision over BLE (bleak on the Bumble backend, in the board's
room), find a board's SoftAP server, peek at its store."""
import asyncio

from tools.console import Console
from tools.prov.client import Provisioner
from tools.prov.transport import BleakTransport, HttpTransport


def ble(board, timeout=10.0, scan_timeout=10.0):
    """A BLE transport to this board (by its address: a room may hold many boards)."""
    return BleakTransport(board.ble_address, air=board.ble_air, timeout=timeout, scan_timeout=scan_timeout)


def advertisements(board, timeout=1.0):
    """What a phone in the board's room hears for `timeout` s: {address: AdvertisementData}."""
    from bleak import BleakScanner
    from tools.ble.bleak_bumble import BumbleScanner

    async def scan():
        found = await BleakScanner.discover(timeout=timeout, return_adv=True, backend=BumbleScanner,
                                            air=board.ble_air)
        return {d.address: adv for d, adv in found.values()}
    return asyncio.run(scan())


# How the tests that are about what comes after provisioning (cloud, streaming, registration)
# onboard their boards: over BLE, as a phone does first.
ONBOARDING = "ble"


def provision(board, pop, ssid, passphrase, password=None, transport=ONBOARDING, **kw):
    """Provision the board once its window is open, over `transport` ("ble" or "softap"; its
    factory config must offer it); the provisioning result. pop: security 1's proof of
    possession; password: security 2's."""
    board.wait_for(b"provisioning open for", timeout=15)
    with ble(board) if transport == "ble" else softap(board) as t:
        return Provisioner(t, pop=pop, password=password).provision(
            ssid, passphrase, on_progress=lambda line: None, poll=0.1, **kw)


def softap(board, timeout=10):
    """An HTTP transport to the board's SoftAP provisioning server, once it listens."""
    return HttpTransport("127.0.0.1", board.wait_softap(timeout))


def stored(board, record):
    """A record as the board's store holds it (through the serial console, after a soft reset
    so the stopped firmware's heap is free: the firmware does not run again afterwards)."""
    with Console("socket://127.0.0.1:%d" % board.console.port) as c:
        out = c.exec("print(repr(__import__('firmware.store').store.Store().get(%r)))" % record,
                     soft_reset=True)
    import ast
    return ast.literal_eval(out.strip())
