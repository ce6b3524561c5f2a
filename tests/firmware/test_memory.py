"""The node fits an ESP8266's heap and does not leak.

Budget: the precompiled firmware runs in a 48 KB MicroPython heap on the 64-bit Unix
port, where every object takes about twice the bytes it takes on a 32-bit ESP8266
(which leaves about 40 KB free to Python); the host fakes of machine/network/dht, which
are C on a board, are counted in it too.
"""
from tests.conftest import eventually
from tests.firmware.conftest import node_settings

HEAP_BUDGET = "48k"


def test_the_precompiled_node_runs_steadily_in_its_heap_budget(board, live_server, token_for):
    board.precompile()
    board.configure(**node_settings(live_server.url, token_for("kitchen")))

    board.start("-X", f"heapsize={HEAP_BUDGET}")
    eventually(lambda: len(live_server.history("kitchen")) >= 15)
    board.stop()

    free = [reading["heap"] for reading in live_server.history("kitchen")]
    assert "MemoryError" not in board.console()
    assert max(free[5:]) - min(free[5:]) < 512, f"free heap drifts: {free}"
