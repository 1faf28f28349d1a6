# The serial console: what a person at a terminal on the board's UART can do while the
# firmware runs (docs/registration.md, "The serial console"):
#
#   roost> key              set the registration key (masked echo, validated)
#   roost> status           node, Wi-Fi, registration, bootstrap, mapping
#   roost> factory-reset    erase user data (asks for "yes"), reboot
#   roost> reboot
#
# The same jobs are plain functions for the raw REPL (set_key, status, factory_reset), which
# `roost console set-key|status|factory-reset` calls through mpremote's transport.
# Ctrl-C is left to MicroPython: it stops the firmware and gives the Python REPL, which is
# also how mpremote gets in. Secrets are never echoed, printed or logged.
import sys

from micropython import const

_PROMPT = "roost> "
_MAX_LINE = const(80)
_KEY_POLL_MS = const(10)    # typing echo delay at most this (a person notices ~50 ms)
_HELP = "commands: status, key, factory-reset, reboot, help (Ctrl-C: Python REPL)"
_ASK_KEY = "registration key: "


def check_key(text):
    """The key in canonical (upper case) form; ValueError with a message a person can act on."""
    key = text.strip().upper()
    ok = len(key) == 17 and key[8] == "-"
    if ok:
        for c in key[:8] + key[9:]:
            if not ("A" <= c <= "Z" or "0" <= c <= "9"):
                ok = False
                break
    if not ok:
        raise ValueError("a registration key looks like XXXXXXXX-XXXXXXXX "
                         "(8 letters or digits, a hyphen, 8 more); nothing stored")
    return key


def masked(key):
    return key[:8] + "-********" if key else "not set"


def _store(store):
    if store is None:
        from firmware.store import Store
        store = Store()
    return store


def set_key(text, store=None):
    """Store a registration key; a different key also clears the registration result, so the
    device registers again. Prints the outcome; returns True if the key is stored."""
    store = _store(store)
    try:
        key = check_key(text)
    except ValueError as e:
        print("registration key refused: %s" % e)
        return False
    if store.get("regkey")["key"] != key:
        # The result first: a power cut between the two writes leaves the old key with no
        # result (registers again with it), never the new key with the old key's channel.
        store.set("registration", {})
        store.set("regkey", {"key": key})
    print("registration key stored: %s" % masked(key))
    return True


def status(store=None, app=None):
    """Print what a person needs to know about the device (no secrets)."""
    store = _store(store)
    import gc
    from firmware import board
    gc.collect()
    f = store.factory
    node = (app.node_id if app else None) or f["node_id"] or board.node_id()
    print("node %s, %s, heap free %d" % (node, "state " + app.state if app else "firmware stopped",
                                         gc.mem_free()))
    nets = store.wifi_networks()
    sta = board.sta()
    print("wifi: %d network(s) stored%s; %s" % (
        len(nets), " (%s)" % ", ".join(n["ssid"] for n in nets) if nets else "",
        "connected, ip %s" % sta.ifconfig()[0] if sta.isconnected() else "not connected"))
    key = store.get("regkey")["key"]
    reg = store.get("registration")
    if not f["endpoints"]["registration"]:
        what = "no registration server in the factory config"
    elif not key:
        what = "no key (type: key)"
    elif reg["done"]:
        what = "registered, channel %s" % reg["channel"]
    else:
        what = "not registered yet"
    print("registration: key %s, %s" % (masked(key), what))
    boot = store.get("bootstrap")
    print("bootstrap: %s" % ("done, thing %s" % boot["thing_id"] if boot["done"] else
                             "not done" if f["endpoints"]["bootstrap"] else "no bootstrap server"))
    user = store.get("user")
    print("user mapping: %s%s" % (user["status"], ", user %s" % user["user_id"] if user["user_id"] else ""))


def factory_reset(store=None):
    """Erase user data (Wi-Fi, keys, registration, mapping); the factory config stays."""
    _store(store).factory_reset()
    print("factory reset done: user data erased")


class Console:
    """The interactive console: reads the UART without blocking the rest of the app. The app
    loads it when a line's first character arrives and unloads it when the line is served
    (App.console), so it costs no heap while nobody types."""

    def __init__(self, app, poll):
        self.app = app
        self.poll = poll        # select.poll with sys.stdin registered
        self._prompt = None     # the prompt shown while a line is being typed
        self._line = bytearray()
        self._mask = False
        self._last = 0          # the previous character: \r\n is one Enter

    async def run(self, first):
        """Serve one line (a command and its questions) from its first character; the app
        unloads this module afterwards, so the console holds no heap between commands."""
        import log
        log.add_sink(self._redraw)
        try:
            self._pending = first
            line = await self._read(_PROMPT, False)
            if line.strip():
                await self._do(line)
            sys.stdout.write(_PROMPT)
        finally:
            log.remove_sink(self._redraw)

    def _redraw(self, line):
        # A log line was printed over the line being typed: show it again underneath.
        if self._prompt is not None and self._line:
            n = len(self._line)
            sys.stdout.write(self._prompt + ("*" * n if self._mask else self._line.decode()))

    async def _getch(self):
        import asyncio
        while not self.poll.poll(0):
            await asyncio.sleep_ms(_KEY_POLL_MS)
        return sys.stdin.read(1)

    async def _read(self, prompt, mask):
        """One line typed with echo (or '*' echo); backspace and Ctrl-U edit it."""
        w = sys.stdout.write
        self._prompt, self._line, self._mask = prompt, bytearray(), mask
        if prompt != _PROMPT:
            w(prompt)
        esc = False
        while True:
            ch, self._pending = self._pending or await self._getch(), None
            if not ch:
                continue
            c = ord(ch)
            if esc:                     # skip the rest of an escape sequence (arrow keys)
                esc = c == 0x5B or not (0x40 <= c <= 0x7E)
                continue
            if c == 0x1B:
                esc = True
            elif c == 0x0D or c == 0x0A:
                if c == 0x0A and self._last == 0x0D:
                    self._last = c
                    continue
                w("\r\n")
                self._prompt = None
                self._last = c
                return self._line.decode()
            elif c in (0x08, 0x7F):
                if self._line:
                    self._line = self._line[:-1]
                    w("\b \b")
            elif c == 0x15:             # Ctrl-U: erase the whole line
                w("\b \b" * len(self._line))
                self._line = bytearray()
            elif 0x20 <= c < 0x7F and len(self._line) < _MAX_LINE:
                self._line.append(c)
                w("*" if mask else ch)
            self._last = c

    async def _do(self, line):
        app = self.app
        words = line.split()
        cmd = words[0].lower() if words else ""
        try:
            if cmd == "help" or cmd == "?":
                print(_HELP)
            elif cmd == "status":
                status(app.store, app)
            elif cmd == "key":
                if len(words) > 1:
                    print("type just `key`: the key is asked for with a masked echo "
                          "(this one was shown in clear: nothing stored)")
                else:
                    typed = await self._read(_ASK_KEY, True)
                    if set_key(typed, app.store):
                        app.key_changed()
            elif cmd == "factory-reset":
                answer = await self._read("erase Wi-Fi networks, keys and registration? type yes: ", False)
                if answer.strip().lower() == "yes":
                    factory_reset(app.store)
                    self._reboot()
                else:
                    print("factory reset cancelled")
            elif cmd == "reboot":
                self._reboot()
            else:
                print("unknown command %r; %s" % (cmd[:20], _HELP))
        except Exception as e:      # the console must survive whatever a command hits
            print("error: %s" % e)

    def _reboot(self):
        from firmware import board
        print("rebooting")
        board.reset()
