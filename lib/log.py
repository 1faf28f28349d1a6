# Tiny logger for the device console. One line per event: "<ms> <LEVEL> <tag>: <message>".
# Secrets never reach it: callers pass values through redact(), and any keyword
# argument whose name looks secret is masked here as a second line of defence.
import time

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARN", ERROR: "ERROR"}
_SECRET_WORDS = ("pass", "secret", "key", "pop", "token", "verifier", "code")

level = INFO
_sinks = []


def add_sink(fn):
    """fn(line) is called for every emitted line (e.g. a ring buffer for the status command)."""
    _sinks.append(fn)


def remove_sink(fn):
    if fn in _sinks:
        _sinks.remove(fn)


def redact(value):
    """What a log line may show of a secret: its length only."""
    if value is None:
        return "None"
    return "<%d bytes>" % len(value)


def _is_secret(name):
    name = name.lower()
    for w in _SECRET_WORDS:
        if w in name:
            return True
    return False


def _emit(lvl, tag, msg, kw):
    if lvl < level:
        return
    if kw:
        parts = [msg]
        for k in kw:
            v = kw[k]
            parts.append("%s=%s" % (k, redact(v) if _is_secret(k) else v))
        msg = " ".join(parts)
    line = "%d %s %s: %s" % (time.ticks_ms() if hasattr(time, "ticks_ms") else 0, _NAMES[lvl], tag, msg)
    print(line)
    for s in _sinks:
        s(line)


def why(e):
    """An exception as a log line shows it: "OSError [Errno 104] ECONNRESET", or the bare
    type name when it carries no message."""
    return "%s %s" % (type(e).__name__, e) if str(e) else type(e).__name__


def debug(tag, msg, **kw):
    _emit(DEBUG, tag, msg, kw)


def info(tag, msg, **kw):
    _emit(INFO, tag, msg, kw)


def warning(tag, msg, **kw):
    _emit(WARNING, tag, msg, kw)


def error(tag, msg, **kw):
    _emit(ERROR, tag, msg, kw)


# Lines from a BLE IRQ handler wait here for the main task. On an ESP32 the handler runs on
# the NimBLE task holding the GIL, and printing more than 20 characters gives the GIL up: the
# main task would run and could free the handler's frames. later() only keeps the line;
# flush(), on the main task, prints it. A flood cannot grow the queue: past _LATER_MAX lines
# are counted, not kept.
_LATER_MAX = 8
_later = []
_dropped = [0]


def later(lvl, tag, msg, **kw):
    if lvl < level:
        return
    if len(_later) < _LATER_MAX:
        _later.append((lvl, tag, msg, kw))
    else:
        _dropped[0] += 1


def flush():
    """Print what later() kept, oldest first (on the main task)."""
    while _later:
        lvl, tag, msg, kw = _later.pop(0)
        _emit(lvl, tag, msg, kw)
    if _dropped[0]:
        n, _dropped[0] = _dropped[0], 0
        _emit(WARNING, "log", "%d line(s) from an IRQ handler dropped" % n, None)
