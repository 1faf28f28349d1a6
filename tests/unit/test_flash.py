"""`roost flash` without hardware: the chip table against esptool's own, the esptool command line it
builds and how esptool 5.6.0 parses it, the file and port checks, and every error as the one line the
user sees. Fake boards: pyserial's loop:// (nothing answers) and a stand-in for esptool's detect_chip."""
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import esptool
import esptool.bin_image as bin_image
import pytest
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from tools import cli, flash

ROOT = Path(__file__).resolve().parents[2]
NO_PORT = "/dev/ttyUSB-roost-test-missing"

# MicroPython's ports/esp32/boards/ESP32_GENERIC*/board.json "flash_offset" (S2: deploy_s2.md)
MICROPYTHON_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c2": 0x0, "esp32c3": 0x0,
                       "esp32c6": 0x0, "esp32h2": 0x0, "esp32c5": 0x2000, "esp32p4": 0x2000}


def image(tmp_path, chip="esp32", app=False, name=None):
    """A small ESP image for `chip`, written by esptool's own image writer (not by our parser's
    assumptions): a bootloader-like RAM segment, or (app) an app's esp_app_desc_t first."""
    img = getattr(bin_image, "ESP32%sFirmwareImage" % chip[5:].upper())()
    if app:     # the DROM segment of an ESP32 app, mapped at 0x3F400020, starts with the app description
        img.segments.append(bin_image.ELFSection(b".flash.appdesc", 0x3F400020,
                                                 struct.pack("<I", 0xABCD5432) + bytes(252), 0))
    else:
        img.segments.append(bin_image.ELFSection(b".dram0.data", 0x3FFF0000, bytes(64), 0))
    img.entrypoint = 0x40080000
    path = tmp_path / (name or "%s%s.bin" % (chip, "-app" if app else ""))
    img.save(str(path))
    return path


def roost_flash(capsys, *argv):
    """cli.main(["flash", ...]) in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(["flash", *argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv):
    code, out, err = roost_flash(capsys, *argv)
    assert code == 1, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("roost flash: error: "), err
    return lines[0][len("roost flash: error: "):]


# the chip table and the esptool command line

def test_offsets_are_micropythons_and_esptools():
    assert flash.OFFSETS == MICROPYTHON_OFFSETS
    for chip, offset in flash.OFFSETS.items():
        assert CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET == offset, chip


@pytest.mark.parametrize("chip", sorted(MICROPYTHON_OFFSETS))
def test_esptool_command_per_chip(chip):
    offset = "0x%x" % MICROPYTHON_OFFSETS[chip]
    assert flash.esptool_args("/dev/ttyUSB0", chip, "fw.bin") == [
        "--chip", chip, "--port", "/dev/ttyUSB0", "--baud", "460800", "--before", "default-reset",
        "--after", "hard-reset", "write-flash", "--erase-all", "--compress", offset, "fw.bin"]


def test_esptool_command_options():
    args = flash.esptool_args("/dev/ttyACM0", "ESP32-S3", "fw.bin", baud=115200, erase=False, verbose=True)
    assert args == ["--chip", "esp32s3", "--port", "/dev/ttyACM0", "--baud", "115200", "--before",
                    "default-reset", "--after", "hard-reset", "--verbose", "write-flash", "--compress",
                    "0x0", "fw.bin"]
    # no modem lines over a socket or loop:// URL: esptool must not try to reset the chip
    assert flash.esptool_args("socket://host:4000", "esp32", "f")[7] == "no-reset"
    assert flash.esptool_args("rfc2217://host:4000", "esp32", "f")[7] == "default-reset"
    assert flash.esptool_args("/dev/ttyUSB0", "esp32", "@fw.bin")[-1] == "./@fw.bin"   # not an @argfile


@pytest.mark.parametrize("chip,erase", [("esp32", True), ("esp32s2", False), ("esp32c3", True),
                                        ("esp32p4", True)])
def test_esptool_parses_our_command(tmp_path, monkeypatch, chip, erase):
    """esptool 5.6.0's own command line turns our arguments into write_flash(offset, file, erase, compress)
    on the connection we pass it: nothing of the board's side runs (prepare/attach/write are recorded)."""
    fw = image(tmp_path, chip)
    seen = {}

    def prepare(ctx):
        seen["obj"] = dict(ctx.obj)

    def write_flash(esp, addr_data, **kw):
        seen["write"] = (esp, [(a, f.name) for a, f in addr_data], kw)
    monkeypatch.setattr(esptool, "prepare_esp_object", prepare)
    monkeypatch.setattr(esptool, "attach_flash", lambda *a, **kw: None)
    monkeypatch.setattr(esptool, "write_flash", write_flash)
    board = object()
    esptool.main(flash.esptool_args("/dev/ttyUSB0", chip, fw, baud=921600, erase=erase), esp=board)
    obj = seen["obj"]
    assert obj["esp"] is board and obj["chip"] == chip and obj["baud"] == 921600
    assert (obj["before"], obj["after"]) == ("default-reset", "hard-reset")
    esp, files, kw = seen["write"]
    assert esp is board and files == [(MICROPYTHON_OFFSETS[chip], str(fw))]
    assert kw["erase_all"] is erase and kw["compress"] is True and not kw["force"]


# argument and file checks (before any port is opened: the port here does not exist)

def test_unknown_chip(tmp_path, capsys):
    fw = image(tmp_path)
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(fw), "--chip", "esp32x") == (
        "unknown chip 'esp32x': roost flash knows esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c6, "
        "esp32h2, esp32c5, esp32p4")
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(fw), "--chip", "esp8266").startswith(
        "unknown chip 'esp8266'")
    assert flash.chip_key("ESP32-S3") == flash.chip_key("esp32_s3") == "esp32s3"


def test_bad_baud(tmp_path, capsys):
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(image(tmp_path)), "--baud", "0") == (
        "--baud must be a positive number, not 0")


def _not_images(tmp_path):
    (tmp_path / "fw.uf2").write_bytes(b"UF2\n\x57\x51\x5d\x9e" + bytes(504))
    (tmp_path / "fw.zip").write_bytes(b"PK\x03\x04" + bytes(60))
    (tmp_path / "fw.elf").write_bytes(b"\x7fELF\x01\x01\x01" + bytes(60))
    (tmp_path / "page.bin").write_bytes(b"<!DOCTYPE html><html>Not Found</html>")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "short.bin").write_bytes(b"\xe9\x03\x02\x20")
    (tmp_path / "a-dir.bin").mkdir()


@pytest.mark.parametrize("name,expected", [
    ("missing.bin", "firmware file {d}/missing.bin not found"),
    ("a-dir.bin", "firmware {d}/a-dir.bin is a directory, not an image file"),
    ("empty.bin", "firmware {d}/empty.bin is empty"),
    ("fw.uf2", "{d}/fw.uf2 is a UF2 file (for drag-and-drop USB bootloaders), not the image esptool writes: "
               "download the .bin of that firmware"),
    ("fw.zip", "{d}/fw.zip is a zip archive, not the image esptool writes: unpack it and pass the .bin inside"),
    ("fw.elf", "{d}/fw.elf is an ELF file (for debuggers), not the image esptool writes: pass the .bin of "
               "the same build"),
    ("page.bin", "{d}/page.bin is not an ESP firmware image (it starts with 0x3C, an image with 0xE9): "
                 "download the .bin for your board from micropython.org/download"),
    ("short.bin", "{d}/short.bin is too short (4 bytes) to be a firmware image"),
])
def test_not_a_firmware_image(tmp_path, capsys, name, expected):
    _not_images(tmp_path)
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(tmp_path / name), "--chip", "esp32") == \
        expected.format(d=tmp_path)


def test_app_only_image(tmp_path, capsys):
    fw = image(tmp_path, "esp32", app=True)
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(fw)) == (
        "%s is an application-only image (like MicroPython's .app-bin, for OTA updates): flash the full "
        ".bin, which has the bootloader and partition table" % fw)


def test_image_for_another_chip(tmp_path, capsys):
    fw = image(tmp_path, "esp32s3")
    assert error_line(capsys, "--port", NO_PORT, "--firmware", str(fw), "--chip", "esp32") == (
        "%s is a firmware for ESP32-S3, not esp32: pass --chip esp32s3, or a firmware for ESP32" % fw)
    for chip in MICROPYTHON_OFFSETS:        # and the header's chip ID names each chip
        assert flash.check_image(image(tmp_path, chip)) == chip


# the port

def test_no_such_port(tmp_path, capsys, monkeypatch):
    import serial.tools.list_ports

    class Port:
        def __init__(self, device):
            self.device = device
    fw = str(image(tmp_path))
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [Port("/dev/ttyUSB0"), Port("/dev/ttyACM0")])
    assert error_line(capsys, "--port", NO_PORT, "--firmware", fw) == (
        "no serial port %s: is the board plugged in? (ports seen: /dev/ttyACM0, /dev/ttyUSB0)" % NO_PORT)
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [])
    assert error_line(capsys, "--port", NO_PORT, "--firmware", fw).endswith("(ports seen: none)")


def test_port_that_is_not_a_serial_port(tmp_path, capsys):
    fw = image(tmp_path)
    assert error_line(capsys, "--port", str(fw), "--firmware", str(fw)).startswith(
        "cannot open serial port %s: " % fw)


@pytest.mark.parametrize("exc,expected", [
    ((13, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'"),
     "cannot open serial port {p}: permission denied (Linux: add yourself to the dialout group, "
     "then log in again)"),
    ((None, "could not open port 'COM9': FileNotFoundError(2, 'The system cannot find the file specified.')"),
     "no serial port {p}: is the board plugged in? (ports seen: COM3)"),
    ((None, "could not open port 'COM3': PermissionError(13, 'Access is denied.', None, 5)"),
     "serial port {p} is in use by another program (mpremote, screen, a serial monitor?): close it first"),
    ((5, "could not open port x: [Errno 5] Input/output error\nmore"),
     "cannot open serial port {p}: could not open port x: [Errno 5] Input/output error"),
])
def test_port_open_errors(tmp_path, capsys, monkeypatch, exc, expected):
    """pyserial's errors as Linux and Windows word them (esptool's loader matches the same texts)."""
    import serial
    import serial.tools.list_ports

    class Port:
        device = "COM3"

        def open(self):
            raise serial.SerialException(*exc)
    monkeypatch.setattr(serial, "serial_for_url", lambda *a, **kw: Port())
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [Port()])
    fw = str(image(tmp_path))
    assert error_line(capsys, "--port", "COM9", "--firmware", fw) == expected.format(p="COM9")


def test_nothing_answers_on_the_port(tmp_path, capsys, monkeypatch):
    """loop:// echoes what esptool sends: no chip ever answers its sync. One connect attempt: fast."""
    monkeypatch.setenv("ESPTOOL_CONNECT_ATTEMPTS", "1")
    t = time.monotonic()
    line = error_line(capsys, "--port", "loop://", "--firmware", str(image(tmp_path)), "--chip", "esp32")
    assert time.monotonic() - t < 5
    assert line.startswith("no chip answering on loop://: hold BOOT while pressing RESET (EN) to enter the "
                           "bootloader, then retry (esptool: Failed to connect to Espressif device: ")
    assert line.endswith(")")


@pytest.fixture
def pty():
    """A real serial device path with nothing on the other end: a pseudo-terminal."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_nothing_answers_on_a_serial_device(tmp_path, capsys, monkeypatch, pty):
    monkeypatch.setenv("ESPTOOL_CONNECT_ATTEMPTS", "1")
    code, out, err = roost_flash(capsys, "--port", pty, "--firmware", str(image(tmp_path)))
    assert code == 1 and "Connecting..." in out
    assert err.splitlines()[-1] == (      # before it, esptool may warn that a pty has no DTR/RTS
        "roost flash: error: no chip answering on %s: hold BOOT while pressing RESET (EN) to enter the "
        "bootloader, then retry (esptool: Failed to connect to Espressif device: No serial data received.)"
        % pty)


def test_port_in_use(tmp_path, capsys, pty):
    import serial
    with serial.Serial(pty, exclusive=True):     # as mpremote or a serial monitor would hold it
        assert error_line(capsys, "--port", pty, "--firmware", str(image(tmp_path))) == (
            "serial port %s is in use by another program (mpremote, screen, a serial monitor?): close it first"
            % pty)


def test_verbose_shows_esptools_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("ESPTOOL_CONNECT_ATTEMPTS", "1")
    with pytest.raises(cli.CliError) as e:
        cli.main(["flash", "--port", "loop://", "--firmware", str(image(tmp_path)), "--verbose"])
    assert isinstance(e.value.__cause__, FatalError)
    assert "Failed to connect" in str(e.value.__cause__)


def test_the_command_line_tool(tmp_path):
    """`python -m tools flash`, as people run it: one line on stderr, status 1; --verbose: the traceback."""
    fw = str(image(tmp_path))
    env = dict(os.environ, ESPTOOL_CONNECT_ATTEMPTS="1")
    r = subprocess.run([sys.executable, "-m", "tools", "flash", "--port", "loop://", "--firmware", fw],
                       cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(
        "roost flash: error: no chip answering on loop://")
    assert "Connecting..." in r.stdout        # esptool's own output
    r = subprocess.run([sys.executable, "-m", "tools", "--verbose", "flash", "--port", "loop://", "--firmware",
                        fw], cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "esptool.util.FatalError: Failed to connect" in r.stderr
    assert "tools.cli.CliError: no chip answering on loop://" in r.stderr


# a stand-in for the board: esptool's detect_chip answers with a chip, esptool.main is recorded

class FakeBoard:
    def __init__(self, chip_name):
        self.CHIP_NAME = chip_name


@pytest.fixture
def board(monkeypatch):
    """detect_chip() finds the chip set in board["chip"]; esptool.main records its call."""
    import esptool.cmds
    state = {"chip": "ESP32", "main": [], "ports": []}

    def detect_chip(port, baud, before, trace, attempts):
        state["ports"].append(port)
        state["detect"] = (baud, before, attempts)
        return FakeBoard(state["chip"])

    def main(args, esp=None):
        if "fail" in state:
            raise state["fail"]
        state["main"].append((args, esp))
    monkeypatch.setattr(esptool.cmds, "detect_chip", detect_chip)
    monkeypatch.setattr(esptool, "main", main)
    return state


def test_board_is_another_chip(tmp_path, capsys, board):
    board["chip"] = "ESP32-S3"
    assert error_line(capsys, "--port", "loop://", "--firmware", str(image(tmp_path)), "--chip", "esp32") == (
        "the board on loop:// is an ESP32-S3, not an esp32: pass --chip esp32s3, with a firmware for ESP32-S3")
    assert board["main"] == [] and not board["ports"][0].is_open
    board["chip"] = "ESP32-H4"      # esptool knows it, roost flash does not
    assert error_line(capsys, "--port", "loop://", "--firmware", str(image(tmp_path))) == (
        "the board on loop:// is an ESP32-H4, not an esp32: roost flash does not support it")


def test_flashes_on_the_detected_connection(tmp_path, capsys, board):
    board["chip"] = "ESP32-S3"
    fw = image(tmp_path, "esp32s3")
    code, out, err = roost_flash(capsys, "--port", "loop://", "--firmware", str(fw))   # chip: the image's
    assert (code, err) == (0, "")
    [(args, esp)] = board["main"]
    assert args == flash.esptool_args("loop://", "esp32s3", fw) and esp.CHIP_NAME == "ESP32-S3"
    assert args[-3:] == ["--compress", "0x0", str(fw)] and "--erase-all" in args
    assert board["detect"] == (115200, "no-reset", 7)
    assert not board["ports"][0].is_open
    assert out.splitlines() == [
        "roost flash: ESP32-S3 at 0x0; esptool --chip esp32s3 --port loop:// --baud 460800 --before no-reset "
        "--after hard-reset write-flash --erase-all --compress 0x0 %s" % fw,
        "roost flash: done; the board restarts into MicroPython"]

    board["main"].clear()
    board["chip"] = "ESP32"
    fw = image(tmp_path, "esp32")
    assert roost_flash(capsys, "--port", "loop://", "--firmware", str(fw), "--chip", "esp32", "--no-erase",
                       "--baud", "921600")[0] == 0
    [(args, esp)] = board["main"]
    assert args == ["--chip", "esp32", "--port", "loop://", "--baud", "921600", "--before", "no-reset",
                    "--after", "hard-reset", "write-flash", "--compress", "0x1000", str(fw)]


def test_flashing_fails_halfway(tmp_path, capsys, board):
    board["fail"] = FatalError("Timed out waiting for packet header\nmore details")
    assert error_line(capsys, "--port", "loop://", "--firmware", str(image(tmp_path))) == (
        "flashing loop:// failed: Timed out waiting for packet header (the board may not boot until "
        "flashed again)")
    assert not board["ports"][0].is_open
