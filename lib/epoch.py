# Where time.time() counts from. MicroPython on ESP32 counts from 2000-01-01 (as does the
# simulated chip); CPython and most hosts from 1970. The device keeps its times in its own
# epoch (small ints: 2026 is about 8.5e8 s after 2000, while Unix seconds no longer fit a
# 31-bit small int) and adds UNIX_OFFSET where the world wants Unix time (SenML, NTP).
import time

UNIX_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
# 2025-01-01 in the port's epoch: a clock before it was never set (an ESP32 starts at 2000).
_SET_AFTER = 1735689600 - UNIX_OFFSET


def clock_set():
    """True once the clock has been set from the network (or kept across a reset by the RTC).
    TLS needs it: mbedTLS checks certificate dates against this clock."""
    return time.time() >= _SET_AFTER
