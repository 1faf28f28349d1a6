"""Power cuts at random instants while the store writes (tests/faults/powercut.py).

ROOST_POWERCUTS=N sets the number of cuts (default 300), ROOST_POWERCUT_SEED the
seed (default 1): a failing run is replayed with the same seed (the instants
are seeded; the chip's speed still varies a little from run to run).
"""
import os

from tests.faults import powercut


def test_power_cuts_never_corrupt_a_record(tmp_path, capsys, record_property):
    cuts = int(os.environ.get("ROOST_POWERCUTS", "300"))
    seed = int(os.environ.get("ROOST_POWERCUT_SEED", "1"))
    report = powercut.run_powercuts(cuts, seed, tmp_path, lanes=2)
    line = report.summary() + " seed=%d" % seed
    with capsys.disabled():            # shown with or without -s
        print("\n" + line)
    record_property("powercut", line)
    assert report.cuts == cuts
    assert report.boots >= cuts * 0.8, line          # most cuts were followed by a full check
    assert report.acks > cuts, line                  # the scenario really wrote between cuts
    assert report.corrupt == 0, line + "\n" + "\n".join(report.problems)
    assert report.errors == 0, line                  # a cut alone never damages a copy
