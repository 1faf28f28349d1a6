import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # lib/ modules also run under CPython
sys.path.insert(0, str(ROOT / "lib"))
VECTORS = Path(__file__).resolve().parent / "vectors"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Remember each phase's outcome so the board fixture can show the console of a failed test.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def stop_and_show(boards, request):
    """Stop the boards; if the test failed, print the tail of each one's console."""
    failed = getattr(request.node, "rep_call", None)
    for b in boards:
        b.stop()
        if failed is not None and failed.failed:
            tail = bytes(b.out[-4000:]).decode(errors="replace")
            print("\n--- console of %s ---\n%s" % (b.flash.name, tail))


@pytest.fixture(scope="session")
def vector():
    def load(name):
        return json.loads((VECTORS / name).read_text())
    return load


@pytest.fixture(scope="session")
def firmware_image(tmp_path_factory):
    """A flash image with the firmware deployed as `make sim` does (.mpy in the filesystem),
    built once per test run."""
    from tools import deploy
    image = tmp_path_factory.mktemp("firmware") / "template.img"
    deploy.to_image(image, mpy=True, log=lambda line: None)
    return image


@pytest.fixture
def new_board(tmp_path, firmware_image, request):
    """Factory: a simulated board fresh out of the box with the firmware on it, powered on.

    new_board(world=World(...), image=None, factory={...}, ram="esp32", heap=None) -> started Board;
    all stopped at teardown. `factory` is the factory config written at manufacture. The board's
    RAM is an ESP32_GENERIC's (tools/sim/chip/esp32/esp32_ram.c) unless `heap` fixes it.
    """
    import shutil
    from tools import deploy
    from tools.sim.board import Board
    boards = []

    def make(world=None, image=None, factory=None, **kw):
        image = image or firmware_image
        flash = tmp_path / ("board%d.img" % len(boards))
        shutil.copyfile(image, flash)
        if deploy.romfs_path(image).exists():
            shutil.copyfile(deploy.romfs_path(image), deploy.romfs_path(flash))
        if factory is not None:
            deploy.factory_to_image(flash, factory, log=lambda line: None)
        b = Board(flash, world=world, **kw)
        boards.append(b)
        return b.start()
    yield make
    stop_and_show(boards, request)


@pytest.fixture
def console_of():
    """console_of(board) -> a Console on the board's serial port (closed at teardown)."""
    from tools.console import Console
    opened = []

    def make(board):
        c = Console("socket://127.0.0.1:%d" % board.console.port)
        opened.append(c)
        return c
    yield make
    for c in opened:
        c.close()
