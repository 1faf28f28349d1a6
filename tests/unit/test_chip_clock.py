"""The chip's clock is an ESP32's RTC: 2000-01-01 at power on until set, and mbedTLS checks
certificate dates against it (docs/simulator.md, "Clock")."""
import ssl
import threading
import time

import pytest

from mpy import run_mpy
from tools.cloud.pki import PKI
from tools.sim.air import listen_local

UNIX_2000 = 946684800
YEAR = 365 * 24 * 3600


def on_chip(code, board_time=None):
    """Run code on the chip whose RTC reads `board_time` (Unix seconds) now; 2000-01-01 if None,
    as at power on. The supervisor passes the clock the same way (ROOST_CLOCK_BASE_US)."""
    now_us = time.time_ns() // 1000
    board_us = ((board_time or UNIX_2000) - UNIX_2000) * 1_000_000
    return run_mpy(code, heap="200K", path=(), env={"ROOST_CLOCK_BASE_US": str(now_us - board_us)})


def test_the_clock_reads_2000_at_power_on_and_runs_from_what_rtc_set():
    out = on_chip("import time, _simchip\nprint(time.time(), time.gmtime()[:6])\n"
                  "_simchip.set_clock(789004800, 0)\ntime.sleep_ms(1100)\nprint(time.gmtime()[:6])")
    first, second = out.splitlines()
    assert first == "0 (2000, 1, 1, 0, 0, 0)"
    assert second == "(2025, 1, 1, 0, 0, 1)"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A TLS server with the local cloud's certificates (valid from yesterday for ten years)."""
    pki = PKI(tmp_path_factory.mktemp("pki")).ensure()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert_path, pki.key_path)
    sock = listen_local()

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (OSError, ssl.SSLError):
                pass    # the chip refused the certificate
    threading.Thread(target=serve, daemon=True).start()
    der = ssl.PEM_cert_to_DER_cert(pki.ca_pem)
    yield sock.getsockname()[1], der
    sock.close()


TLS_CLIENT = """
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=%r)
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")
    print("ok", t.read(5))
except ValueError as e:      # modtls_mbedtls.c raises verification failures as ValueError
    print("refused", str(e).strip())
"""


@pytest.mark.parametrize("ahead,verdict", [
    (None, "refused The certificate validity starts in the future"),   # never set: 2000-01-01
    (30 * YEAR, "refused The certificate validity has expired"),       # 30 years off
    (0, "ok"),                                                          # set from the network
], ids=["unset", "30-years-ahead", "set"])
def test_tls_checks_certificate_dates_against_the_boards_clock(tls_server, ahead, verdict):
    port, ca_der = tls_server
    board_time = None if ahead is None else int(time.time()) + ahead
    out = on_chip(TLS_CLIENT % (ca_der, port), board_time).strip()
    assert out.startswith(verdict), out
    if verdict == "ok":
        assert out == "ok b'hello'"
