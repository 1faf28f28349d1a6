# Network time: one SNTP query (lib/sntp.py) to the factory's endpoints.ntp, and the RTC set
# from its answer. firmware/online.py asks when the device goes online, before anything that
# stamps or sends readings, and again every few hours (an ESP32's RTC drifts by seconds a
# day); this module and sntp are loaded only for the query. Readings taken before the clock
# was first set carry their uptime; the sinks resolve those (docs/telemetry.md).
import time

import log


def set_clock(t):
    """Set the RTC to epoch seconds t; returns how far off it was. (The one use of machine
    outside board.py: kept here so the board module, resident from boot, stays small.)"""
    import machine
    off = t - time.time()
    tm = time.gmtime(int(t))
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], int(t % 1 * 1000000)))
    return off


async def sync(host):
    """True if the clock was set from host."""
    import sntp
    try:
        t = await sntp.query(host)
    except Exception as e:      # no answer, a bad one, no DNS: the clock waits, nothing else
        log.warning("clock", "no network time from %s (%s)" % (host, log.why(e)))
        return False
    log.info("clock", "set from %s (it was %+.1f s off)" % (host, set_clock(t)))
    return True
