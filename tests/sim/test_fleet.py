"""A small fleet through the fleet benchmark's own driver (tests/bench/fleet.py): five boards
powered on at once, provisioned over BLE by phones working side by side, mapped to one owner,
bootstrapped onto one Mosquitto and sampling every second; after a window of streaming every
board stops, and the cloud holds every reading each board took, once."""
from tests.bench.fleet import ROW, duplicates_kept, in_window, lost, run_fleet

BOARDS = 5
WINDOW_S = 15       # longer than the boards' 10 s flash batches: each one delivers in it


def test_a_fleet_onboards_at_once_and_the_cloud_gets_every_reading_once(tmp_path):
    rows, fleet = run_fleet(tmp_path, BOARDS, window=WINDOW_S)   # FleetError unless all onboard

    assert len(fleet.nodes) == BOARDS
    assert len({node.node_id for node in fleet.nodes}) == BOARDS
    for node in fleet.nodes:
        assert node.streaming_at is not None, node.node_id
        # Readings flowed while the window was open: taken about once a second, and stored.
        assert len(in_window(node, "time", fleet.window)) >= WINDOW_S - 2, node.node_id
        assert in_window(node, "received_at", fleet.window), node.node_id
        # Every reading the board says it took is in the cloud, once.
        assert node.last_seq >= WINDOW_S
        assert lost(node) == 0, (node.node_id, node.last_seq, node.stats)
        assert duplicates_kept(node) == 0
        assert node.stats["gaps"] == 0 and node.stats["rejected"] == 0, node.stats
        assert node.board.boots == 1 and not node.console_errors(), node.node_id

    # The benchmark's own figures say the same.
    assert figure(rows, "lost readings") == "0"
    assert figure(rows, "duplicates kept") == "0"
    assert float(figure(rows, "readings/s delivered")) >= 0.8 * BOARDS


def figure(rows, what):
    """The value of the one row of this fleet whose figure's name starts with `what`."""
    [value] = [value for name, value, _ in rows if name.startswith(ROW % BOARDS + what)]
    return value
