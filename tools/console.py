"""The serial console of a board, real or simulated, through mpremote's own transport.

    with Console("socket://127.0.0.1:4000") as c:      # or "/dev/ttyUSB0"
        print(c.exec("import gc; print(gc.mem_free())"))
        print(c.firmware("set_key", "HQ481047-1JWORF43"))   # firmware/console.py's commands
        c.restart()                                          # soft reset: the firmware runs again

exec() interrupts the running firmware (Ctrl-C) and uses the raw REPL without a soft reset,
exactly like `mpremote connect PORT resume exec ...`.
"""
import time

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport


class ConsoleError(Exception):
    pass


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
