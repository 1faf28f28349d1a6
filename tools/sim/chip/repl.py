# The simulated board's serial REPL, speaking what a real MicroPython board speaks
# on its UART: the friendly REPL for a person at a terminal and the raw REPL
# (Ctrl-A ... Ctrl-D -> "OK" output \x04 error \x04 ">") that mpremote drives.
# As on a board, Ctrl-C is an interrupt only while code runs (the supervisor turns
# it into SIGINT -> KeyboardInterrupt) and a plain character while the REPL reads
# input; the REPL tells the supervisor which of the two it is doing.
import sys

import _air

# As ports/esp32 prints it (MICROPY_HW_BOARD_NAME, MICROPY_HW_MCU_NAME), with this build's version.
_BANNER = ("MicroPython v%d.%d.%d on roost-sim; Generic ESP32 module (simulated) with ESP32\r\n"
           "Type \"help()\" for more information.\r\n" % sys.implementation.version[:3])
_RAW_BANNER = "raw REPL; CTRL-B to exit\r\n>"
_PASTE_WINDOW = 256     # bytes the host may send ahead in raw-paste mode
_NO_HEAP = "\x04MemoryError: no heap for the command\r\n\x04>"
_PASTE_OK = "R\x01\x00\x01"   # raw paste supported, window _PASTE_WINDOW (16-bit little-endian)

_in = sys.stdin.buffer
_out = sys.stdout


def _w(s):
    _out.write(s)


def _intr(on):
    _air.call("uart", intr=on)


def _getc():
    c = _in.read(1)
    if not c:
        # The supervisor closed our console: nothing left to serve.
        raise SystemExit(0)
    return c[0]


def soft_reboot(raw):
    _w("MPY: soft reboot\r\n")
    _air.call("power", kind="soft", raw=raw)
    while True:
        _getc()


def _exec(src, glb, single):
    try:
        _intr(True)
        exec(compile(src, "<stdin>", "single" if single else "exec"), glb)
    except SystemExit:
        raise
    except BaseException as e:  # KeyboardInterrupt included: a REPL survives it
        sys.print_exception(e, _out)
    finally:
        _intr(False)


def _run(src, glb):
    # The raw REPL's answer to a command: its output, \x04, its error, \x04, and the prompt.
    try:
        _intr(True)
        exec(compile(bytes(src), "<stdin>", "exec"), glb)
        _intr(False)
        _w("\x04")
    except SystemExit:
        raise
    except BaseException as e:
        _intr(False)
        _w("\x04")
        sys.print_exception(e, _out)
    _w("\x04>")


def _raw_paste(glb):
    # The host may send _PASTE_WINDOW bytes ahead; each \x01 we send grants it as many more
    # once we have taken them in. The host's \x04 ends the code: we acknowledge it, then run it.
    # Nothing here may need the heap before the code is in: the firmware may have filled it.
    _w(_PASTE_OK)
    taken = 0
    try:
        src = bytearray()
    except MemoryError:
        src = None
    while True:
        c = _getc()
        if c == 0x04:
            break
        if src is not None:
            try:
                src.append(c)
            except MemoryError:
                src = None      # too big for this heap: take the rest, then say so
        taken += 1
        if taken == _PASTE_WINDOW:
            taken = 0
            _w("\x01")
    _w("\x04")
    if src is None:
        _w(_NO_HEAP)
    else:
        _run(src, glb)


def raw_repl(glb):
    _w(_RAW_BANNER)
    buf = bytearray()
    while True:
        try:
            c = _getc()
        except KeyboardInterrupt:
            buf = bytearray()
            continue
        if c == 0x01:  # Ctrl-A: restart raw REPL
            buf = bytearray()
            _w("\r\n" + _RAW_BANNER)
        elif c == 0x02:  # Ctrl-B: back to the friendly REPL
            _w("\r\n")
            return
        elif c == 0x03:
            buf = bytearray()
        elif c == 0x04:
            if not buf:
                soft_reboot(True)
            _w("OK")
            _run(buf, glb)
            buf = bytearray()
        elif c == 0x05 and not buf:
            # Raw-paste request "\x05A\x01": as a real board, take the code with flow control
            # instead of the plain raw REPL's "256 bytes every 10 ms" (mpremote's fallback).
            if _getc() == 0x41 and _getc() == 0x01:
                _raw_paste(glb)
            else:
                _w("R\x00")
        else:
            buf.append(c)


def _complete(src):
    try:
        compile(src, "<stdin>", "single")
        return True
    except SyntaxError:
        lines = src.split("\n")
        # A block opener or an unfinished block waits for more lines, as the real REPL does.
        return not (lines[-1].rstrip().endswith(":") or (len(lines) > 1 and lines[-1] != ""))


def friendly_repl(glb):
    _w(_BANNER)
    lines = []
    line = bytearray()
    _w(">>> ")
    while True:
        try:
            c = _getc()
        except KeyboardInterrupt:
            lines = []
            line = bytearray()
            _w("\r\nKeyboardInterrupt\r\n>>> ")
            continue
        if c == 0x01:
            _w("\r\n")
            raw_repl(glb)
            _w(_BANNER + ">>> ")
            lines = []
            line = bytearray()
        elif c == 0x02:
            _w("\r\n" + _BANNER + ">>> ")
            lines = []
            line = bytearray()
        elif c == 0x03:
            lines = []
            line = bytearray()
            _w("\r\n>>> ")
        elif c == 0x04:
            if not line and not lines:
                _w("\r\n")
                soft_reboot(False)
        elif c in (0x08, 0x7F):
            if line:
                line = line[:-1]
                _w("\x08 \x08")
        elif c == 0x0D or c == 0x0A:
            if c == 0x0A and not line and not lines:
                continue  # the \n of a \r\n pair
            _w("\r\n")
            lines.append(line.decode())
            line = bytearray()
            src = "\n".join(lines)
            if not src.strip():
                lines = []
            elif _complete(src) or (len(lines) > 1 and lines[-1] == ""):
                lines = []
                _exec(src, glb, True)
            else:
                _w("... ")
                continue
            _w(">>> ")
        elif c >= 0x20 or c == 0x09:
            line.append(c)
            _out.write(chr(c))


def run(raw, glb):
    _intr(False)
    while True:
        if raw:
            raw_repl(glb)
            raw = False
        friendly_repl(glb)
