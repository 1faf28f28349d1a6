"""Fixtures for simulated-board tests: boards that run a given program from a fresh flash image."""
import textwrap

import pytest

from tools.deploy import files_to_image
from tools.sim.board import Board

from tests.conftest import stop_and_show


def write_image(image, files, staging):
    """Write `files` ({path on the board: str or bytes}) into a flash image, with the same
    LittleFS (chip/imagetool.py under the unix port) the chip mounts; the image is created
    blank (erased) first if it does not exist."""
    for rel, content in files.items():
        p = staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(textwrap.dedent(content))
        else:
            p.write_bytes(content)
    files_to_image(image, staging)


@pytest.fixture
def board(tmp_path, request):
    """Factory: board(main="...", files={...}, **Board kwargs) -> a started Board whose flash
    holds main.py (and `files`). Boards are stopped at teardown; a failed test prints the
    tail of each board's console."""
    boards = []

    def make(main=None, files=None, start=True, **kw):
        n = len(boards)
        image = tmp_path / ("flash%d.img" % n)
        files = dict(files or {})
        if main is not None:
            files["main.py"] = main
        if files:
            write_image(image, files, tmp_path / ("staging%d" % n))
        b = Board(image, **kw)
        boards.append(b)
        if start:
            b.start()
        return b

    yield make
    stop_and_show(boards, request)
