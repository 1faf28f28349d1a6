"""The serial console of a board, real or simulated, through mpremote's own transport.

    with Console("socket://127.0.0.1:4000") as c:      # or "/dev/ttyUSB0"
        print(c.command("status"))                      # at the running firmware's roost> prompt
        print(c.exec("import gc; print(gc.mem_free())"))

command() types at the firmware's own console (firmware/console.py) while it runs: nothing
stops. exec() interrupts the running firmware (Ctrl-C) and uses the raw REPL without a soft
reset, exactly like `mpremote connect PORT resume exec ...`; firmware() runs a console command
that way, for a board whose firmware is not at its prompt (stopped at the Python REPL, say).
"""
import re
import time

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport


class ConsoleError(Exception):
    pass


class NotAtPrompt(ConsoleError):
    """No firmware console answered an Enter: the firmware is not running (or not this one)."""


PROMPT = b"roost> "
_LOG_LINE = re.compile(r"^\d+ (DEBUG|INFO|WARN|ERROR) \S+: ")
_BUSY = "console: not enough memory right now"


class Console:
    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except TransportError as e:
            raise ConsoleError("cannot open console %s: %s" % (port, e))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        finally:
            self.t.close()

    def exec(self, code, timeout=None, soft_reset=False):
        """Run code on the board; returns what it printed. Raises ConsoleError with the traceback.
        soft_reset: run it on a fresh heap (boot.py only, as mpremote does without `resume`)."""
        try:
            # Every time: the board may have reset (or the app restarted) since the last call.
            # A Ctrl-C that lands in boot.py does not stop main.py (as on a board): try twice.
            try:
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=3)
            except TransportError:
                time.sleep(0.3)                       # let the late output arrive, then drop it
                self.t.serial.reset_input_buffer()
                self.t.enter_raw_repl(soft_reset=False)
                # The first Ctrl-A may still sit in the UART buffer and print a second banner:
                # settle, drop everything, and ask for exactly one fresh prompt.
                time.sleep(0.2)
                self.t.serial.reset_input_buffer()
                self.t.serial.write(b"\r\x01")
                self.t.read_until(1, b"raw REPL; CTRL-B to exit\r\n")  # exec reads the ">"
            if soft_reset:
                self.t.read_until(1, b">", timeout=3)
                self.t.serial.write(b"\x04")
                for banner in (b"soft reboot\r\n", b"raw REPL; CTRL-B to exit\r\n"):
                    if not self.t.read_until(1, banner, timeout_overall=10).endswith(banner):
                        raise TransportError("no raw REPL after the soft reset")
            out, err = self.t.exec_raw(code, timeout=timeout or self.timeout)
        except TransportError as e:
            self.t.in_raw_repl = False
            raise ConsoleError("console %s: %s" % (self.port, e))
        if err:
            raise ConsoleError(err.decode(errors="replace").strip())
        return out.decode(errors="replace")

    def command(self, line, answers=(), until=PROMPT, timeout=None):
        """Type `line` at the running firmware's roost> prompt, answer its questions (pairs of
        the question's last words and the answer), and return what the command printed: its own
        lines, without the echo, the prompts or the log lines printed meanwhile. `until` ends the
        answer (the next prompt; b"rebooting" for a command that resets the board). The firmware
        keeps running. NotAtPrompt when no roost> prompt answers an Enter."""
        timeout = timeout or self.timeout
        t = self.t
        try:
            for attempt in (1, 2):
                t.serial.reset_input_buffer()
                # Ctrl-U clears a line someone left half typed (or a question left unanswered);
                # Enter alone then shows a fresh prompt.
                t.serial.write(b"\x15\r")
                if not t.read_until(1, PROMPT, timeout_overall=3).endswith(PROMPT):
                    raise NotAtPrompt("console %s: no roost> prompt (is the firmware running?)" % self.port)
                t.serial.write(line.encode() + b"\r")
                out = b""
                for question, answer in answers:
                    out += self._expect(question.encode(), timeout)
                    t.serial.write(answer.encode() + b"\r")
                out += self._expect(until, timeout)
                text = out.decode(errors="replace")
                if _BUSY not in text or attempt == 2:
                    break
                time.sleep(1)         # the console's code did not fit the heap this moment
        except TransportError as e:
            raise ConsoleError("console %s: %s" % (self.port, e))
        return "\n".join(x for x in text.replace("\r", "").split("\n")
                         if x and not x.startswith("roost>") and not _LOG_LINE.match(x)
                         and not any(q in x for q, _ in answers))

    def _expect(self, ending, timeout):
        out = self.t.read_until(1, ending, timeout_overall=timeout)
        if not out.endswith(ending):
            raise ConsoleError("console %s: no %r from the firmware in %d s" % (self.port, ending.decode(), timeout))
        return out

    def eval(self, expr):
        import ast
        return ast.literal_eval(self.exec("print(repr(%s))" % expr).strip())

    def firmware(self, command, *args):
        """Run one of the firmware's console commands (firmware/console.py: set_key, status,
        factory_reset) through the raw REPL; returns what the board printed. The firmware stays
        stopped until restart()."""
        call = "console.%s(%s)" % (command, ", ".join(repr(a) for a in args))
        # After a soft reset into the raw REPL (boot.py runs, main.py does not): the stopped
        # firmware's tasks and modules would otherwise hold most of a small heap.
        return self.exec("from firmware import console\n" + call, soft_reset=True)

    def restart(self, timeout=5):
        """Soft reset from the friendly REPL (Ctrl-D), as a person would: boot.py and main.py
        run again. (A soft reset from the raw REPL would skip main.py.)"""
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
                self.t.read_until(1, b">>> ", timeout=timeout)
            self.t.serial.write(b"\x04")
            out = self.t.read_until(1, b"soft reboot", timeout=timeout)
        except TransportError as e:
            raise ConsoleError("console %s: %s" % (self.port, e))
        if not out.endswith(b"soft reboot"):
            raise ConsoleError("the board did not restart after Ctrl-D")


QUIT = b"\x1d"          # Ctrl-], as in telnet and miniterm


def terminal(port, stdin_fd=0, out=None, linger=1.0, banner=None):
    """An interactive terminal on the board's console until Ctrl-] (or the end of a piped
    input, then `linger` seconds for the answers): what the board prints is shown as it comes,
    keys go to the board as typed. On a tty the keyboard is in raw mode (Ctrl-C reaches the
    board: its Python REPL); from a pipe, a newline is sent as the Enter key (CR). banner: a
    line for stderr once the port is open."""
    import os
    import sys
    import threading
    import serial
    out = out or sys.stdout.buffer
    try:
        s = serial.serial_for_url(port, baudrate=115200, timeout=0.1)
    except (serial.SerialException, OSError, ValueError) as e:
        raise ConsoleError("cannot open console %s: %s" % (port, e))
    if banner:
        print(banner, file=sys.stderr, flush=True)
    stop = threading.Event()

    def show():
        while not stop.is_set():
            try:
                data = s.read(256)
            except (serial.SerialException, OSError):
                stop.set()
                return
            if data:
                out.write(data)
                out.flush()
    reader = threading.Thread(target=show, daemon=True, name="console-reader")
    reader.start()
    tty_in = os.isatty(stdin_fd)
    saved = None
    if tty_in:
        import termios
        import tty
        saved = termios.tcgetattr(stdin_fd)
        tty.setraw(stdin_fd)
    try:
        while not stop.is_set():
            keys = os.read(stdin_fd, 64)
            if not keys:
                time.sleep(linger)
                break
            quit_at = keys.find(QUIT)
            if quit_at >= 0:
                keys = keys[:quit_at]
            if not tty_in:
                keys = keys.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
            if keys:
                s.write(keys)
            if quit_at >= 0:
                time.sleep(0.2 if tty_in else linger)
                break
        if stop.is_set():
            raise ConsoleError("console %s closed" % port)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        stop.set()
        reader.join(1)
        s.close()
