"""The one way the benchmarks print their rows (name, value, unit): `make bench`'s table, and a
module's own when it runs alone (python -m tests.bench.heap)."""


def print_table(rows):
    width = max(len(r[0]) for r in rows)
    print("%-*s %12s  %s" % (width, "benchmark", "value", "unit"))
    print("-" * (width + 20))
    for name, value, unit in rows:
        print("%-*s %12s  %s" % (width, name, value, unit))


def run_alone(run):
    """A benchmark module run by itself: its run(rows), then the table."""
    rows = []
    run(rows)
    print_table(rows)
