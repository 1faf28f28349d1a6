"""A board's clock starts at 2000-01-01, as an ESP32's does, and mbedTLS checks certificate dates
against it: TLS before network time would find every certificate "not yet valid". The board
says it waits, makes no TLS connection, and goes on to the cloud once the time server answers."""
import re
import time

from tests.sim.test_streaming import LISTENING, assert_never_reset


def test_tls_waits_for_network_time_then_the_board_onboards(onboard, cloud):
    cloud.ntp.stop()                       # silent: the board's queries time out
    try:
        board = onboard()
        # From the end of that line: the UART may not have delivered all of it yet when its
        # start matches, and its tail ("certificates cannot be checked...") is not a TLS error.
        start = board.wait_for(re.compile(rb"TLS waits for network time from ntp\.roost\.local[^\r\n]*\r\n"),
                               timeout=30).end()
        time.sleep(4)
        out = bytes(board.out)
        assert b"MQTT connected" not in out and b"bootstrapped" not in out
        assert b"not yet valid" not in out and b"certificate" not in out[start:]
    finally:
        cloud.ntp.start()
    board.wait_for(b"INFO clock: set from ntp.roost.local", since=start, timeout=30)
    board.wait_for(LISTENING, since=start, timeout=30)
    assert_never_reset(board, start)
