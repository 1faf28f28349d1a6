"""Flash footprint: the .mpy bytes `roost deploy --mpy` writes, in all and for the largest modules,
against the budgets in tests/budgets.json (tests/unit/test_budgets.py enforces them)."""
from tests.unit.test_budgets import BUDGETS, mpy_sizes


def run(rows, largest=8):
    sizes = mpy_sizes()
    budget = BUDGETS["flash"]
    rows.append(("footprint: .mpy total, %d files (budget %d)" % (len(sizes), budget["total_mpy"]),
                 "%d" % sum(sizes.values()), "B"))
    for f, b in sorted(sizes.items(), key=lambda x: -x[1])[:largest]:
        rows.append(("footprint: %s" % f, "%d" % b, "B"))
