"""Getting the firmware onto a board: `roost deploy` to an image or a port, mip's package.json,
and `roost board` announcing its ports."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import deploy

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(rb"roost: roost \S+ node [0-9A-F]{12}")


def test_package_json_lists_exactly_the_device_files():
    assert (ROOT / "package.json").read_text() == deploy.package_json_text(), \
        "package.json is stale: run python -c 'from tools.deploy import write_package_json; write_package_json()'"


def console_url(board):
    return "socket://127.0.0.1:%d" % board.console.port


def test_a_blank_board_formats_its_flash_and_waits_at_the_repl(board):
    b = board()                                  # nothing on the flash: erased, as from the factory
    b.wait_for(b"Performing initial setup")
    b.wait_for(b">>> ")


def test_deploy_over_the_console_copies_only_changes_then_resets(board):
    b = board()
    b.wait_for(b">>> ")
    changed = deploy.to_port(console_url(b), mpy=True, log=lambda line: None)
    assert "main.py" in changed and "firmware/app.mpy" in changed
    b.wait_for(BANNER, timeout=15)
    assert deploy.to_port(console_url(b), mpy=True, log=lambda line: None) == []   # nothing changed


def test_mip_installs_the_package_json_onto_a_board(board):
    # mip copies the sources, which the board compiles as it imports them: that takes more heap
    # than the .mpy files roost deploy writes (docs/real-board.md says so).
    b = board(heap="160K")
    b.wait_for(b">>> ")
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", console_url(b), "resume", "mip", "install",
                        "--target=", str(ROOT / "package.json"), "+", "reset"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    b.wait_for(BANNER, timeout=15)
    b.wait_for(b"provisioning open", timeout=15)


def test_roost_board_prints_its_ports_as_one_json_line(tmp_path, firmware_image):
    flash = tmp_path / "b.img"
    flash.write_bytes(firmware_image.read_bytes())
    p = subprocess.Popen([sys.executable, "-m", "tools", "board", "--flash", str(flash), "--heap", "120K"],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ports = json.loads(p.stdout.readline())
        assert ports["console"] > 0 and re.fullmatch(r"127\.0\.0\.1:\d+", ports["ble_air"])
        from tools.console import Console
        with Console("socket://127.0.0.1:%d" % ports["console"]) as c:
            # The chip's GC heap is --heap; the ROM, shims and file system mount keep ~9.5 KB of it.
            heap = c.eval("__import__('gc').mem_free() + __import__('gc').mem_alloc()")
            shims = c.eval("__import__('_air').BASELINE")
            assert 116 * 1024 < heap <= 120 * 1024 and shims < 12 * 1024
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_deploy_refuses_two_targets_with_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools", "deploy"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "exactly one target" in r.stderr


# Where the code runs from, the board it needs, what deploy says, and the __file__ of two modules.
CODE_FROM_FLASH = {
    # partitions-4MiB-romfs.csv: a romfs partition, mounted at /rom
    "romfs": (dict(romfs_partition=True), r"ROMFS: \d+ bytes written to the romfs partition, verified",
              "/rom/firmware/app.mpy", "/rom/lib/srp6a.mpy"),
    # MicroPython built with the project's manifest.py; a frozen module's __file__ is its name there
    "frozen": (dict(roost_frozen=True), r"deployed 2 files: 0 written, \d\d removed, all verified",
               "firmware/app.py", "srp6a.py"),
}


@pytest.mark.parametrize("where", sorted(CODE_FROM_FLASH))
def test_deploy_over_the_console_runs_the_code_from_flash(board, where):
    kw, said_first, app_file, lib_file = CODE_FROM_FLASH[where]
    if kw.pop("roost_frozen", False):
        from tools.sim.chip.build import chip_binary
        kw["micropython"] = chip_binary(roost=True)
    b = board(**kw)
    b.wait_for(b">>> ")
    url = console_url(b)
    deploy.to_port(url, mpy=True, log=lambda line: None)     # first the code in LittleFS
    b.wait_for(BANNER, timeout=15)
    said = []
    deploy.to_port(url, log=said.append, **{where: True})
    assert re.fullmatch(said_first, said[0]), said
    b.wait_for(b"provisioning open", timeout=20)
    from tools.console import Console
    with Console(url) as c:
        # LittleFS keeps boot.py, main.py and data only, since its copies would come first on sys.path.
        assert not {"firmware", "lib"} & set(c.eval("__import__('os').listdir('/')"))
        assert c.eval("__import__('firmware.app').app.__file__") == app_file
        assert c.eval("__import__('srp6a').__file__") == lib_file


def test_deploy_romfs_to_a_board_without_the_partition_says_so(board):
    b = board()                                  # ESP32_GENERIC's table: no romfs partition
    b.wait_for(b">>> ")
    r = subprocess.run([sys.executable, "-m", "tools", "deploy", "--romfs", "--port", console_url(b)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "partition not found" in r.stderr


def test_deploy_frozen_to_a_micropython_without_roost_says_so_and_changes_nothing(board):
    b = board()                                  # a stock MicroPython: nothing frozen in
    b.wait_for(b">>> ")
    deploy.to_port(console_url(b), mpy=True, log=lambda line: None)
    b.wait_for(BANNER, timeout=15)
    r = subprocess.run([sys.executable, "-m", "tools", "deploy", "--frozen", "--port", console_url(b)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "has no roost frozen in" in r.stderr
    from tools.console import Console
    with Console(console_url(b)) as c:
        assert {"firmware", "lib"} <= set(c.eval("__import__('os').listdir('/')"))
