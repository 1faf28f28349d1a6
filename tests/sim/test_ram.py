"""The simulated board's RAM is an ESP32_GENERIC's: a 56K GC heap that grows into the IDF heap,
which NimBLE, the Wi-Fi driver, lwIP and mbedTLS share (tools/sim/chip/esp32/esp32_ram.c,
docs/simulator.md "RAM"). Each test breaks or keeps one rule of it, on a board running only
the program it is given."""
import re

import pytest

from tools.console import ConsoleError

from tests.sim.conftest import WIFI, home_world

HELPERS = """
import gc, micropython, esp32, network, socket, ssl, bluetooth, time

def idf():
    return esp32.idf_heap_info(esp32.HEAP_DATA)

def wifi_up():
    w = network.WLAN(network.WLAN.IF_STA)
    w.active(True)
    w.connect(%(ssid)r, %(key)r)
    for _ in range(50):
        if w.isconnected():
            return w
        time.sleep_ms(100)
    raise OSError("no Wi-Fi")

def tls(host, port):
    # A TLS handshake with the cloud's broker; the session is closed again.
    s = socket.socket()
    s.settimeout(5)
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_NONE
    try:
        t = ctx.wrap_socket(s, server_hostname=host)
    except OSError as e:
        s.close()
        return "failed %%s" %% (e,)
    t.close()
    return "ok"

def hold(n):
    # n bytes of live Python objects, in 1000-byte pieces: what grows the GC heap.
    return [bytearray(1000) for _ in range(n // 1000)]

def fill():
    # Python objects until the heap can grow no more; then a little room for the REPL.
    held = []
    try:
        while True:
            held.append(bytearray(1000))
    except MemoryError:
        pass
    del held[-8:]
    return held
"""


@pytest.fixture
def ram_board(board, cloud, console_of):
    """ram_board(**Board kwargs) -> (a board in the home world whose main.py only defines
    HELPERS, its console)."""
    def make(**kw):
        b = board(main=HELPERS % {"ssid": WIFI[0], "key": WIFI[1]}, world=home_world(cloud), **kw)
        b.wait_for(b">>> ", timeout=20)
        return b, console_of(b)
    return make


def gc_total(c):
    return int(re.search(r"GC: total: (\d+)", c.exec("micropython.mem_info()")).group(1))


def test_the_gc_heap_starts_at_56k_and_grows_into_the_largest_idf_block(ram_board):
    board, c = ram_board()
    assert c.eval("len(idf())") == 3
    largest = max(r[2] for r in c.eval("idf()"))
    assert gc_total(c) == 56_000                  # 57,344 B less the collector's tables
    # gc.mem_free() counts the IDF block the heap could still grow into (py/modgc.c:69).
    info = c.exec("gc.collect(); print(gc.mem_free()); micropython.mem_info()")
    free, split = re.search(r"free: (\d+), max new split: (\d+)", info).groups()
    assert int(info.split()[0]) == int(free) + int(split) and int(split) == largest
    c.exec("held = hold(80_000)")
    # One growth: an area the size of the heap so far, as py/gc.c:365 decides, taken from the
    # largest IDF block. 112,000 B is what a real ESP32_GENERIC shows after one growth.
    assert gc_total(c) == 112_000
    assert largest - max(r[2] for r in c.eval("idf()")) > 57_000


def test_an_area_goes_back_to_the_idf_once_it_is_empty(ram_board):
    board, c = ram_board()
    free = sum(r[1] for r in c.eval("idf()"))
    # Larger than the heap so far: a new area exactly its size (py/gc.c:336).
    c.exec("big = bytearray(70_000)")
    assert free - sum(r[1] for r in c.eval("idf()")) > 70_000
    c.exec("big = None; gc.collect()")
    assert sum(r[1] for r in c.eval("idf()")) == free


def test_a_heap_that_grows_takes_the_memory_the_wifi_driver_needs(ram_board):
    board, c = ram_board()
    # Python objects first: the heap grows into everything the IDF has, and then the Wi-Fi
    # driver cannot start (ESP_ERR_NO_MEM, network_common.c:81).
    c.exec("held = fill()")
    with pytest.raises(ConsoleError, match="WiFi Out of Memory"):
        c.exec("network.WLAN(network.WLAN.IF_STA)")
    # Released and collected in two commands: the REPL's frames may still point at the error
    # (made while the heap was full) during the first collection: the GC is conservative.
    c.exec("held = None")
    c.exec("gc.collect()")
    c.exec("w = wifi_up()")
    assert c.eval("w.isconnected()") is True


def test_tls_fails_while_ble_and_wifi_hold_the_idf_heap_and_works_once_ble_is_off(ram_board, cloud):
    board, c = ram_board()
    c.exec("w = wifi_up()")
    c.exec("ble = bluetooth.BLE(); ble.active(True)")
    # The program's own objects: a grown heap, as a firmware's is after boot.
    c.exec("held = hold(70_000)")
    out = c.eval("tls(%r, %d)" % (cloud.mqtt_name, cloud.mqtt_tls_port))
    # mbedTLS's MBEDTLS_ERR_SSL_ALLOC_FAILED is ENOMEM from the port (extmod/modtls_mbedtls.c).
    assert re.match(r"failed .*(ENOMEM|ALLOC_FAILED)", out), out
    # NimBLE's 32 KB back: the same handshake goes through.
    c.exec("ble.active(False)")
    assert c.eval("tls(%r, %d)" % (cloud.mqtt_name, cloud.mqtt_tls_port)) == "ok"


def test_ble_cannot_start_once_the_heap_has_grown_into_its_memory(ram_board):
    board, c = ram_board()
    c.exec("w = wifi_up()")
    c.exec("ble = bluetooth.BLE(); ble.active(True); ble.active(False)")
    c.exec("held = hold(100_000)")
    # nimble_port_init() fails: EIO (MICROPY_BLUETOOTH_NIMBLE_PORT_INIT_RETURNS_ERROR).
    with pytest.raises(ConsoleError, match=r"OSError: \[Errno 5\] EIO"):
        c.exec("ble.active(True)")
    assert c.eval("ble.active()") is False


def test_a_socket_needs_idf_memory_and_fails_with_enobufs_without_it(ram_board):
    board, c = ram_board()
    c.exec("w = wifi_up()")
    c.exec("held = fill()")
    with pytest.raises(ConsoleError, match="ENOBUFS"):
        c.exec("socket.socket()")
    c.exec("held = None; gc.collect()")
    c.exec("socket.socket().close()")


def test_gatts_set_buffer_takes_its_bytes_from_the_gc_heap(ram_board):
    board, c = ram_board()
    c.exec("ble = bluetooth.BLE(); ble.active(True)\n"
           "((h,),) = ble.gatts_register_services([(bluetooth.UUID(0x181A), "
           "((bluetooth.UUID(0x2A6E), bluetooth.FLAG_READ),))])\n"
           "gc.collect(); before = gc.mem_alloc()")
    c.exec("ble.gatts_set_buffer(h, 20_000); gc.collect()")
    assert c.eval("gc.mem_alloc() - before") >= 20_000


def test_with_psram_the_heap_grows_into_4mb_and_tls_works_beside_ble(ram_board, cloud):
    board, c = ram_board(ram="psram")
    c.exec("w = wifi_up(); ble = bluetooth.BLE(); ble.active(True); held = hold(1_000_000)")
    assert gc_total(c) > 1_000_000
    assert c.eval("tls(%r, %d)" % (cloud.mqtt_name, cloud.mqtt_tls_port)) == "ok"
