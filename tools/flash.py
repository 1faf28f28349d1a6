"""`roost flash`: put a MicroPython firmware image on a real board with esptool, as a library.

    flash("/dev/ttyUSB0", "ESP32_GENERIC-v1.25.0.bin", chip="esp32")

checks the chip name and the file (an ESP image, for that chip, the full firmware), opens the port,
detects the chip on it and refuses a different one, then runs, on that connection, the esptool
command that `esptool_args()` builds and prints, e.g.

    esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 --before default-reset --after hard-reset
            write-flash --erase-all --compress 0x1000 ESP32_GENERIC-v1.25.0.bin

(erase the whole flash, write compressed at the chip's offset, hard-reset), so progress prints as
esptool prints it. Every failure is a FlashError with one line; its __cause__ is esptool's exception.
"""
import errno
import os
import shlex

# Where MicroPython's full firmware .bin goes: the chip's second-stage bootloader offset, since the
# .bin starts with the bootloader (then the partition table at 0x8000, then the app).
# Verified against esptool 5.6.0's chip classes, esptool/targets/<chip>.py BOOTLOADER_FLASH_OFFSET
# (ESP32ROM 0x1000, ESP32S2ROM inherits it; ESP32S3ROM, ESP32C3ROM, ESP32C6ROM 0x0, ESP32C2ROM and
# ESP32H2ROM inherit it; ESP32C5ROM, ESP32P4ROM 0x2000), and MicroPython's ports/esp32/boards/ESP32_GENERIC*/board.json
# "flash_offset" (S2: boards/deploy_s2.md). tests/unit/test_flash.py checks this table against
# esptool. Left out: chips MicroPython does not ship, and esp32s31 (esptool 0x2000, MicroPython 0).
OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c2": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32h2": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
}
DEFAULT_BAUD = 460800
ROM_BAUD = 115200           # the ROM bootloader syncs at this rate; esptool then switches to --baud

ESP_IMAGE_MAGIC = 0xE9      # first byte of an ESP image (esptool loader.ESP_IMAGE_MAGIC)
CHIP_ID_AT = 12             # u16 chip ID in the extended header (esptool bin_image EXTENDED_HEADER_STRUCT_FMT)
APP_DESC_AT = 0x20          # an app image's first segment starts with esp_app_desc_t ...
APP_DESC_MAGIC = 0xABCD5432  # ... and its magic word (esptool cmds._parse_app_info)
NOT_IMAGES = [              # what people download instead, and what to do about it
    (b"UF2\n", "a UF2 file (for drag-and-drop USB bootloaders)", "download the .bin of that firmware"),
    (b"PK\x03\x04", "a zip archive", "unpack it and pass the .bin inside"),
    (b"\x7fELF", "an ELF file (for debuggers)", "pass the .bin of the same build"),
]


class FlashError(Exception):
    pass


def chip_key(name):
    """'ESP32-S3', 'esp32_s3', 'esp32s3' -> 'esp32s3'; FlashError for a chip not in OFFSETS."""
    key = (name or "").lower().replace("-", "").replace("_", "")
    if key not in OFFSETS:
        raise FlashError("unknown chip %r: roost flash knows %s" % (name, ", ".join(OFFSETS)))
    return key


def _image_chips():
    """esptool's image chip IDs -> our chip keys, and our keys -> esptool's chip names."""
    from esptool.targets import CHIP_DEFS
    return ({CHIP_DEFS[k].IMAGE_CHIP_ID: k for k in OFFSETS}, {k: CHIP_DEFS[k].CHIP_NAME for k in OFFSETS})


def check_image(path, chip=None):
    """The chip key this firmware file is for (must be `chip` when given); FlashError if the file
    is missing, is not an ESP image, is only an application (.app-bin), or is for another chip."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise FlashError("firmware file %s not found" % path) from None
    except IsADirectoryError:
        raise FlashError("firmware %s is a directory, not an image file" % path) from None
    except OSError as e:
        raise FlashError("cannot read firmware %s: %s" % (path, e.strerror or e)) from None
    for magic, what, fix in NOT_IMAGES:
        if head.startswith(magic):
            raise FlashError("%s is %s, not the image esptool writes: %s" % (path, what, fix))
    if not head:
        raise FlashError("firmware %s is empty" % path)
    if head[0] != ESP_IMAGE_MAGIC:
        raise FlashError("%s is not an ESP firmware image (it starts with 0x%02X, an image with 0xE9): "
                         "download the .bin for your board from micropython.org/download" % (path, head[0]))
    if len(head) < APP_DESC_AT + 4:
        raise FlashError("%s is too short (%d bytes) to be a firmware image" % (path, len(head)))
    if int.from_bytes(head[APP_DESC_AT:APP_DESC_AT + 4], "little") == APP_DESC_MAGIC:
        raise FlashError("%s is an application-only image (like MicroPython's .app-bin, for OTA updates): "
                         "flash the full .bin, which has the bootloader and partition table" % path)
    keys, names = _image_chips()
    image_id = int.from_bytes(head[CHIP_ID_AT:CHIP_ID_AT + 2], "little")
    image_chip = keys.get(image_id)
    if image_chip is None:
        raise FlashError("%s is an image for chip ID %d, not for a chip roost flash knows (%s)"
                         % (path, image_id, ", ".join(OFFSETS)))
    if chip and image_chip != chip:
        raise FlashError("%s is a firmware for %s, not %s: pass --chip %s, or a firmware for %s"
                         % (path, names[image_chip], chip, image_chip, names[chip]))
    return image_chip


def _ports_seen():
    try:
        from serial.tools.list_ports import comports
        return ", ".join(sorted(p.device for p in comports())) or "none"
    except Exception:       # no listing on this platform: say nothing rather than fail
        return "cannot list them"


def open_port(port):
    """The opened pyserial port, as esptool opens it (exclusive); FlashError if it is not there."""
    import serial
    if "://" not in port and os.sep in port and not os.path.exists(port):
        raise FlashError("no serial port %s: is the board plugged in? (ports seen: %s)" % (port, _ports_seen()))
    try:
        ser = serial.serial_for_url(port, exclusive=True, do_not_open=True)
        if os.name == "nt":         # as esptool does: keep RTS/DTR high so opening does not reset the chip
            ser.rts = ser.dtr = False
        ser.open()
        return ser
    except (serial.SerialException, OSError, ValueError) as e:
        code = getattr(e, "errno", None)
        why = str(e)
        if code == errno.ENOENT or "FileNotFoundError" in why:
            raise FlashError("no serial port %s: is the board plugged in? (ports seen: %s)"
                             % (port, _ports_seen())) from e
        if "lock" in why or code == errno.EBUSY or "Access is denied" in why:   # the last: Windows
            raise FlashError("serial port %s is in use by another program (mpremote, screen, a serial "
                             "monitor?): close it first" % port) from e
        if code == errno.EACCES or "Permission denied" in why:
            raise FlashError("cannot open serial port %s: permission denied (Linux: add yourself to the "
                             "dialout group, then log in again)" % port) from e
        why = _first_line(getattr(e, "strerror", None) or e)    # pyserial's text, without "[Errno N] "
        raise FlashError("cannot open serial port %s: %s" % (port, why)) from e


def before_reset(port):
    """How esptool gets the chip into its bootloader: DTR/RTS on a serial device (and RFC 2217);
    other pyserial URLs (socket://, loop://) have no modem lines: the board must be put in its
    bootloader by hand (hold BOOT, press RESET)."""
    return "no-reset" if "://" in port and not port.startswith("rfc2217://") else "default-reset"


def esptool_args(port, chip, firmware, baud=DEFAULT_BAUD, erase=True, verbose=False):
    """The esptool command line (without 'esptool') that flashes `firmware`."""
    chip = chip_key(chip)
    args = ["--chip", chip, "--port", port, "--baud", str(baud),
            "--before", before_reset(port), "--after", "hard-reset"]
    if verbose:
        args.append("--verbose")
    args.append("write-flash")
    if erase:
        args.append("--erase-all")      # esptool erases the whole flash, then writes
    firmware = str(firmware)
    if firmware.startswith("@"):        # esptool would read "@file" as a file of arguments
        firmware = os.path.join(".", firmware)
    return args + ["--compress", "0x%x" % OFFSETS[chip], firmware]


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def flash(port, firmware, chip=None, baud=DEFAULT_BAUD, erase=True, verbose=False, say=print,
          connect_attempts=None):
    """Flash `firmware` to the board on `port`. chip: our key (OFFSETS), or None for the image's.
    connect_attempts: esptool's (default: $ESPTOOL_CONNECT_ATTEMPTS, else esptool's default, 7)."""
    chip = chip_key(chip) if chip else None
    if baud <= 0:
        raise FlashError("--baud must be a positive number, not %d" % baud)
    chip = check_image(firmware, chip)
    _, names = _image_chips()

    import serial
    import esptool
    from esptool.cmds import detect_chip
    from esptool.loader import DEFAULT_CONNECT_ATTEMPTS
    from esptool.util import FatalError
    if connect_attempts is None:
        connect_attempts = int(os.environ.get("ESPTOOL_CONNECT_ATTEMPTS", DEFAULT_CONNECT_ATTEMPTS))

    ser = open_port(port)
    try:
        try:
            esp = detect_chip(ser, ROM_BAUD, before_reset(port), False, connect_attempts)
        except (FatalError, serial.SerialException, OSError, StopIteration) as e:
            if "autodetect" in str(e):
                raise FlashError("the chip on %s answered, but esptool %s does not know it (esptool: %s)"
                                 % (port, esptool.__version__, _first_line(e))) from e
            raise FlashError("no chip answering on %s: hold BOOT while pressing RESET (EN) to enter the "
                             "bootloader, then retry (esptool: %s)" % (port, _first_line(e))) from e
        if esp.CHIP_NAME != names[chip]:
            found = {v: k for k, v in names.items()}.get(esp.CHIP_NAME)
            fix = ("pass --chip %s, with a firmware for %s" % (found, esp.CHIP_NAME) if found
                   else "roost flash does not support it")
            raise FlashError("the board on %s is an %s, not an %s: %s" % (port, esp.CHIP_NAME, chip, fix))
        args = esptool_args(port, chip, firmware, baud, erase, verbose)
        say("roost flash: %s at 0x%x; esptool %s" % (esp.CHIP_NAME, OFFSETS[chip], shlex.join(args)))
        try:
            esptool.main(args, esp=esp)     # on this connection: no second reset into the bootloader
        except (FatalError, serial.SerialException, OSError, StopIteration) as e:
            raise FlashError("flashing %s failed: %s (the board may not boot until flashed again)"
                             % (port, _first_line(e))) from e
        except SystemExit as e:             # esptool's command line refused its arguments
            raise FlashError("esptool stopped with status %s" % e.code) from e
    finally:
        ser.close()
    say("roost flash: done; the board restarts into MicroPython")
