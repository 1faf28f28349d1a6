"""The firmware's heap against tests/budgets.json: a board lives its whole life (power on, BLE
provisioning, bootstrap, TLS MQTT with the user mapping, streaming) on the budgeted heap, and the
live heap it holds in each phase stays within that phase's budget. `make bench` finds the
smallest heap and prints the same highs (tests/bench/heap.py)."""
import pytest

from tools.sim.board import heap_bytes

from tests.sim import lifecycle
from tests.unit.test_budgets import BUDGETS


HEAP = BUDGETS["heap"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    return {code: lifecycle.template(d / ("%s.img" % code), code) for code in lifecycle.CODES}


@pytest.fixture
def life(cloud, tmp_path, images):
    def run(sec, code, heap, watch):
        return lifecycle.live(cloud, tmp_path, images[code], heap, sec, 1, watch=watch)
    return run


@pytest.mark.parametrize("sec,code", [(1, "mpy"), (2, "mpy"), (1, "romfs"), (1, "frozen")])
def test_a_board_lives_its_whole_life_on_the_budgeted_heap(life, sec, code):
    heap = HEAP["life"]["sec%d_%s" % (sec, code)]
    result = life(sec, code, heap, watch=False)
    assert result.passed, result


@pytest.mark.parametrize("sec", [1, 2])
def test_each_phase_holds_no_more_live_heap_than_its_budget(life, sec):
    result = life(sec, "mpy", "192K", watch=True)
    assert result.passed, result
    budget = HEAP["live_high"]["sec%d" % sec]
    over = {phase: (high, budget[phase]) for phase, high in result.peak.items() if high > budget[phase]}
    assert not over, "live heap over budget (measured, budget): %s" % over
    # The budgets bite: every phase was measured, and none is budgeted beyond the life's heap.
    assert set(result.peak) == set(lifecycle.NAMES)
    assert max(result.peak.values()) < heap_bytes(HEAP["life"]["sec%d_mpy" % sec])
