# Network time: one SNTP query (lib/sntp.py) to the factory's endpoints.ntp, and the RTC set
# from its answer. firmware/online.py asks when the device goes online, before anything that
# stamps or sends readings, and again every few hours (an ESP32's RTC drifts by seconds a
# day); this module and sntp are loaded only for the query. Readings taken before the clock
# was first set carry their uptime; the sinks resolve those (docs/telemetry.md).
import time

import log


def set_clock(t, us=0):
    """Set the RTC to t seconds (and us microseconds) since the port's epoch; returns how many
    seconds off it was. (The one use of machine outside board.py: kept here so the board
    module, resident from boot, stays small.)"""
    import machine
    off = t - time.time()
    tm = time.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], us))
    return off


async def sync(host):
    """True if the clock was set from host."""
    import sntp
    try:
        t, us = await sntp.query(host)
    except Exception as e:      # no answer, a bad one, no DNS: the clock waits, nothing else
        log.warning("clock", "no network time from %s (%s)" % (host, log.why(e)))
        return False
    log.info("clock", "set from %s (it was %+d s off)" % (host, set_clock(t, us)))
    return True
