"""The firmware's footprint against tests/budgets.json: the .mpy bytes `roost deploy --mpy` puts on a
board, in all and per module. A change that outgrows a budget fails here with the table of what
takes the room; `make bench` prints the same table (tests/bench/footprint.py)."""
import json
from pathlib import Path

from tools import deploy

BUDGETS = json.loads((Path(__file__).resolve().parents[1] / "budgets.json").read_text())


def mpy_sizes():
    """{path on the board: bytes} of the device files, compiled as deploy writes them."""
    staging = deploy.build(mpy=True)
    return {p.relative_to(staging).as_posix(): p.stat().st_size for p in staging.rglob("*") if p.is_file()}


def table(sizes, n=10):
    return "\n".join("%6d  %s" % (b, f) for f, b in sorted(sizes.items(), key=lambda x: -x[1])[:n])


def test_the_firmware_fits_its_flash_budget():
    sizes = mpy_sizes()
    budget = BUDGETS["flash"]
    assert sum(sizes.values()) <= budget["total_mpy"], "over budget:\n" + table(sizes)
    assert max(sizes.values()) <= budget["largest_mpy"], "a module over budget:\n" + table(sizes)
    assert "main.py" in sizes and any(f.startswith("firmware/") and f.endswith(".mpy") for f in sizes)
