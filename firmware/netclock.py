# Network time: one SNTP query (lib/sntp.py) to the factory's endpoints.ntp, and the RTC set
# from its answer. firmware/online.py asks when the device goes online, before anything that
# stamps or sends readings, and again every few hours (an ESP32's RTC drifts by seconds a
# day); this module and sntp are loaded only for the query. Readings taken before the clock
# was first set carry their uptime; the sinks resolve those (docs/telemetry.md).
import log
from firmware import board


async def sync(host):
    """True if the clock was set from host."""
    import sntp
    try:
        t = await sntp.query(host)
    except Exception as e:      # no answer, a bad one, no DNS: the clock waits, nothing else
        log.warning("clock", "no network time from %s (%s)" % (host, log.why(e)))
        return False
    log.info("clock", "set from %s (it was %+.1f s off)" % (host, board.set_clock(t)))
    return True
