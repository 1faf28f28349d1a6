# What the cloud may ask on the control channel (Mainflux agent convention: SenML request
# [{"bn":"<id>:","n":"control","vs":"<command> [argument]"}], answer on .../res with the same
# bn and "vs" = "ok", a JSON status, or "error: ..."). docs/cloud.md lists them.
#
#   stream on|off   interval <1..86400 s>   status   reboot   factory-reset   rebootstrap
import json
import time

import log
from epoch import UNIX_OFFSET

_MAX_INTERVAL_S = 86400


class Commands:
    def __init__(self, store, telemetry=None):
        """telemetry: (outbox, sampler), or None if this device does not stream."""
        self.store = store
        self.telemetry = telemetry
        self.after = None       # what to do once the answer is acknowledged: "reboot", "reset", "rebootstrap"

    def answer(self, msg):
        """A Mainflux agent request (SenML: [{"bn":"<id>:","n":"control","vs":"<command> [arg]"}])
        -> its SenML answer (str), the command run and logged; malformed requests get an error."""
        rid, name = "", "control"
        try:
            req = json.loads(msg)[0]
            rid = req.get("bn", "")
            name, cmd = req["n"], req["vs"]
            result = self.run(cmd)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            cmd, result = "?", "error: malformed request"
        rid = rid[:-1] if type(rid) is str and rid.endswith(":") else ""
        log.info("cloud", "command %s: %s" % (str(cmd)[:32], result[:60]))
        return json.dumps([{"bn": rid, "n": str(name)[:32], "t": time.time() + UNIX_OFFSET, "vs": result}])

    def run(self, text):
        """The answer (a string) to one command line; sets self.after if it has a sequel."""
        self.after = None
        words = text.split() if isinstance(text, str) else []
        if not words:
            return "error: empty command"
        cmd, args = words[0], words[1:]
        fn = getattr(self, "_" + cmd.replace("-", "_"), None) if cmd.replace("-", "").isalpha() else None
        if fn is None:
            return "error: unknown command %s" % cmd[:32]
        try:
            return fn(*args)
        except TypeError:
            return "error: wrong arguments for %s" % cmd
        except ValueError as e:
            return "error: %s" % e

    def _settings(self, **changes):
        if self.telemetry is None:
            raise ValueError("this device does not stream")
        self.store.update("telemetry", **changes)
        self.telemetry[1].wake.set()
        return "ok"

    def _stream(self, state):
        if state not in ("on", "off"):
            raise ValueError("stream takes on or off")
        log.info("cloud", "streaming %s (cloud command)" % state)
        return self._settings(enabled=state == "on")

    def _interval(self, seconds):
        s = int(seconds)
        if not 1 <= s <= _MAX_INTERVAL_S:
            raise ValueError("interval must be 1..%d s" % _MAX_INTERVAL_S)
        log.info("cloud", "sampling every %d s (cloud command)" % s)
        return self._settings(interval_s=s)

    def _status(self):
        import gc
        gc.collect()
        st = {"heap_free": gc.mem_free()}
        st.update(self.store.get("telemetry"))
        if self.telemetry is not None:
            box, sampler = self.telemetry
            st.update({"last_seq": box.next_seq - 1, "pending": len(box), "dropped": box.dropped,
                       "uptime_s": sampler.uptime()})
        return json.dumps(st)

    def _reboot(self):
        self.after = "reboot"
        return "ok"

    def _factory_reset(self):
        self.after = "reset"
        return "ok"

    def _rebootstrap(self):
        self.after = "rebootstrap"
        return "ok"
