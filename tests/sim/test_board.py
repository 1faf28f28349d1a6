"""The simulated board behaves like an ESP32 running MicroPython: boot, console, flash, power."""
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from tools.console import ConsoleError
from tools.sim.world import AccessPoint, World

BANNER = re.compile(rb"roost: roost (\S+) node ([0-9A-F]{12}) heap free (\d+) alloc (\d+) reset cause (\d)")


def test_deployed_firmware_boots_and_shows_its_banner(new_board):
    board = new_board()
    m = board.wait_for(BANNER, timeout=10)
    assert m.group(2).decode() == board.mac.hex().upper()
    assert int(m.group(3)) > 40_000, "the firmware should leave most of the heap free"
    assert m.group(5) == b"1"  # power-on reset
    time.sleep(1.2)
    assert len(board.led) >= 2, "the LED blinks once the app runs"


def test_mpremote_exec_and_fs_work_against_the_console(new_board, tmp_path):
    board = new_board()
    board.wait_for(BANNER)
    url = "socket://127.0.0.1:%d" % board.console.port
    src = tmp_path / "hello.txt"
    src.write_text("hello flash\n")

    def mpremote(*args):
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", url, "resume", *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout
    assert "hello flash" in mpremote("fs", "cp", str(src), ":hello.txt", "+", "fs", "cat", ":hello.txt")
    listing = mpremote("fs", "ls", ":")
    for name in ("boot.py", "main.py", "firmware/", "lib/", "hello.txt"):
        assert name in listing
    assert mpremote("exec", "print(6 * 7)").strip() == "42"


def test_a_file_written_on_the_board_survives_reset_and_power_cut(new_board, console_of):
    board = new_board()
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec("with open('note.txt', 'w') as f: f.write('kept')")
    mark = board.mark()
    board.reset()
    board.wait_for(b"reset cause 2", since=mark)
    assert c.exec("print(open('note.txt').read())").strip() == "kept"
    mark = board.mark()
    board.power_cut()
    board.wait_for(b"reset cause 1", since=mark)
    assert c.exec("print(open('note.txt').read())").strip() == "kept"


def test_a_fixed_heap_never_grows(new_board, console_of):
    # --heap: an experiment's fixed GC heap; the default RAM grows (tests/sim/test_ram.py).
    board = new_board(heap="64K")
    board.wait_for(BANNER)
    with pytest.raises(ConsoleError, match="MemoryError"):
        console_of(board).exec("x = bytearray(80_000)")


def test_ctrl_d_soft_reset_restarts_the_firmware(new_board):
    board = new_board()
    board.wait_for(BANNER)
    with socket.create_connection(("127.0.0.1", board.console.port)) as s:
        s.sendall(b"\x03")                     # interrupt the app, like pressing Ctrl-C
        board.wait_for(b">>> ")
        mark = board.mark()
        s.sendall(b"\x04")                     # Ctrl-D at the prompt: soft reboot
        board.wait_for(b"MPY: soft reboot", since=mark)
        m = board.wait_for(BANNER, since=mark)
        assert m.group(5) == b"5"              # SOFT_RESET


def test_a_person_can_type_at_the_friendly_repl(new_board):
    board = new_board()
    board.wait_for(BANNER)
    with socket.create_connection(("127.0.0.1", board.console.port)) as s:
        s.sendall(b"\x03")
        board.wait_for(b">>> ")
        mark = board.mark()
        s.sendall(b"1 + 22\x08\r")             # a typo fixed with backspace
        board.wait_for(b"\r\n3\r\n>>> ", since=mark)
        mark = board.mark()
        s.sendall(b"for i in range(2):\r    print('x', i)\r\r")
        board.wait_for(b"x 0\r\nx 1\r\n>>> ", since=mark)


def test_rtc_memory_survives_soft_reset_and_deepsleep_but_not_power_cut(new_board, console_of):
    board = new_board()
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec("import machine; machine.RTC().memory(b'sleepy')")
    mark = board.mark()
    c.t.serial.write(b"import machine; machine.deepsleep(100)\x04")  # never returns
    board.wait_for(b"reset cause 4", since=mark, timeout=10)
    c = console_of(board)
    assert c.eval("__import__('machine').RTC().memory()") == b"sleepy"
    mark = board.mark()
    board.power_cut()
    board.wait_for(b"reset cause 1", since=mark)
    assert console_of(board).eval("__import__('machine').RTC().memory()") == b""


def test_nvs_keeps_only_committed_changes(new_board, console_of):
    board = new_board()
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec("import esp32; n = esp32.NVS('roost'); n.set_i32('boots', 7); n.commit(); n.set_i32('lost', 1)")
    mark = board.mark()
    board.reset()
    board.wait_for(BANNER, since=mark)
    c = console_of(board)
    assert c.eval("__import__('esp32').NVS('roost').get_i32('boots')") == 7
    with pytest.raises(ConsoleError, match="OSError"):
        c.exec("import esp32; esp32.NVS('roost').get_i32('lost')")
    buf_too_small = "import esp32; n = esp32.NVS('r'); n.set_blob('b', b'12345'); n.get_blob('b', bytearray(2))"
    with pytest.raises(ConsoleError, match="OSError"):
        c.exec(buf_too_small)


# Connect, then give the attempt time to finish (the lab's APs answer within 0.1 s).
WLAN_POLL = """
import network, time
w = network.WLAN(network.WLAN.IF_STA)
w.active(True)
w.connect(%r, %r)
time.sleep_ms(400)
print(w.status(), w.isconnected())
"""


@pytest.fixture
def lab():
    return World(aps=[AccessPoint("lab", "right-pass", rssi=-40), AccessPoint("cafe", "", rssi=-70)],
                 connect_time=0.1, scan_time=0.05)


def test_wlan_reports_esp32_status_codes(new_board, console_of, lab):
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    assert c.exec(WLAN_POLL % ("lab", "wrong-pass")).split() == ["202", "False"]   # STAT_WRONG_PASSWORD
    # The port retries until disconnect(); then the reason is "left" (8): STAT_IDLE, and a new
    # connect() does not clear it until the attempt ends.
    c.exec("w.disconnect()")
    assert c.exec("w.connect('nowhere', 'x'); print(w.status())").strip() == "1000"
    c.exec("w.disconnect()")
    assert c.exec(WLAN_POLL % ("nowhere", "x")).split() == ["201", "False"]        # STAT_NO_AP_FOUND
    c.exec("w.disconnect()")
    assert c.exec(WLAN_POLL % ("lab", "right-pass")).split() == ["1010", "True"]   # STAT_GOT_IP
    assert c.eval("w.ifconfig()[0]").startswith("192.168.1.")
    scan = c.eval("[(s, ch, rssi, sec) for s, b, ch, rssi, sec, h in w.scan()]")
    assert (b"lab", 6, -40, 3) in scan and (b"cafe", 6, -70, 0) in scan
    assert c.eval("w.config('mac')") == board.mac
    c.exec("w.disconnect()")
    assert c.eval("w.status()") == 1000                                            # STAT_IDLE


def test_the_wifi_driver_refuses_connect_while_it_connects_and_then_scans_nothing(new_board, console_of, lab):
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec(WLAN_POLL % ("lab", "wrong-pass"))            # the port retries for ever
    with pytest.raises(ConsoleError, match="OSError: Wifi Internal Error"):
        c.exec("w.connect('lab', 'right-pass')")
    assert c.eval("w.scan()") == []                      # esp_wifi_scan_start fails: [] and no word
    c.exec("w.disconnect()")                             # what a program must do first
    assert c.exec(WLAN_POLL % ("lab", "right-pass")).split() == ["1010", "True"]
    assert len(c.eval("w.scan()")) == 2
    lab.ap("lab").up = False                             # link lost: the port rejoins by itself
    assert c.eval("w.status()") == 1001
    with pytest.raises(ConsoleError, match="OSError: Wifi Internal Error"):
        c.exec("w.connect('lab', 'right-pass')")
    with pytest.raises(ConsoleError, match="OSError: Wifi Not Connected"):
        c.exec("w.status('rssi')")
    lab.ap("lab").up = True
    time.sleep(0.3)
    assert c.eval("w.isconnected()") is True


def test_reconnects_bounds_the_drivers_retries(new_board, console_of, lab):
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec("import network; w = network.WLAN(network.WLAN.IF_STA); w.active(True); w.config(reconnects=1)")
    assert c.eval("w.config('reconnects')") == 1
    # One attempt and one reconnection, 0.1 s each; then the driver is idle: connect() may come.
    assert c.exec(WLAN_POLL % ("lab", "wrong-pass")).split() == ["202", "False"]
    assert c.exec(WLAN_POLL % ("lab", "right-pass")).split() == ["1010", "True"]


def test_softap_wpa2_needs_8_characters_and_shares_the_stations_channel(new_board, console_of, lab):
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec("import network; ap = network.WLAN(network.WLAN.IF_AP); ap.active(True)")
    with pytest.raises(ConsoleError, match="OSError: Wifi Invalid Password"):
        c.exec("ap.config(essid='node', password='short', authmode=3)")
    c.exec("ap.config(essid='node', password='long enough', authmode=3, channel=11)")
    assert c.eval("ap.config('channel')") == 11
    c.exec(WLAN_POLL % ("lab", "right-pass"))
    assert c.eval("ap.config('channel')") == 6           # the radio follows the station's AP


SOCKETS = """
import gc, socket
held = []
try:
    for i in range(11):
        held.append(socket.socket())
except OSError as e:
    print(len(held), e.errno)
"""


def test_lwip_has_ten_sockets_and_the_collector_frees_dropped_ones(new_board, console_of):
    board = new_board()
    board.wait_for(BANNER)
    c = console_of(board)
    assert c.exec(SOCKETS).split() == ["10", "23"]       # ENFILE on the eleventh
    c.exec("for s in held: s.close()")
    c.exec("held = None")
    # Sockets a program drops are closed by the collector (they have a finaliser, as on ESP32).
    assert c.exec("for i in range(30):\n    socket.socket()\n    gc.collect()\nprint('ok')").strip() == "ok"


def test_a_name_lookup_blocks_the_board_for_the_worlds_dns_time(new_board, console_of, lab, echo_server):
    lab.services["echo.cloud.example"] = echo_server
    lab.dns_time = 0.3
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    c.exec(WLAN_POLL % ("lab", "right-pass"))
    took = c.exec("import socket\nt = time.ticks_ms()\nsocket.getaddrinfo('echo.cloud.example', 7)\n"
                  "print(time.ticks_diff(time.ticks_ms(), t))")
    assert int(took) >= 300


def test_ap_loss_is_a_beacon_timeout_then_reconnects(new_board, console_of, lab):
    board = new_board(world=lab)
    board.wait_for(BANNER)
    c = console_of(board)
    assert c.exec(WLAN_POLL % ("lab", "right-pass")).split() == ["1010", "True"]
    lab.ap("lab").up = False
    assert c.eval("w.status()") == 1001          # reason 200 -> the port keeps CONNECTING
    lab.ap("lab").up = True
    time.sleep(0.3)
    assert c.eval("w.isconnected()") is True


@pytest.fixture
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(100), b"")],
                             daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


ECHO = """
import socket
def echo(msg):
    s = socket.socket()
    s.settimeout(3)
    s.connect(socket.getaddrinfo('echo.cloud.example', 7)[0][-1])
    s.write(msg)
    return s, s.read(len(msg))
"""


def test_sockets_reach_the_cloud_only_over_wifi(board, console_of, lab, echo_server):
    lab.services["echo.cloud.example"] = echo_server
    board = board(world=lab)            # no firmware: the program below has the board's RAM to itself
    board.wait_for(b">>> ")
    c = console_of(board)
    c.exec(ECHO)
    with pytest.raises(ConsoleError, match="-202"):     # no Wi-Fi: name lookup fails as on ESP32
        c.exec("echo(b'hi')")
    c.exec(WLAN_POLL % ("lab", "right-pass"))
    assert c.eval("echo(b'ping')[1]") == b"ping"
    c.exec("s, _ = echo(b'first')")
    lab.ap("lab").up = False
    c.eval("w.status()")                                # the board notices the AP is gone
    out = c.exec("""
try:
    s.write(b'again')
    print('read', s.read(5))
except OSError as e:
    print('broken', e.errno)
""")
    assert out.startswith("broken") or out.strip() == "read b''", out
    with pytest.raises(ConsoleError, match="-202"):
        c.exec("echo(b'hi')")


def test_a_board_at_esp32_pace_boots_and_serves_at_an_esp32s_speed(new_board, console_of):
    board = new_board(pace="esp32")
    board.wait_for(BANNER, timeout=60)
    c = console_of(board)
    assert c.eval("__import__('_simchip').pace()") == pytest.approx(board.pace, rel=1e-3)
    assert board.pace > 5
    # 2,000 Dhrystone loops: about 1.2 s on an ESP32 (1,661 per second).
    rate = c.eval("__import__('dhrystone').stones_per_second(2000)")
    assert 1661 / 2 < rate < 1661 * 2
