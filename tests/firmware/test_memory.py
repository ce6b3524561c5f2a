"""The node fits an ESP8266's heap and does not leak.

Budget: the precompiled firmware runs in a 48 KB MicroPython heap on the 64-bit Unix
port, where every object takes about twice the bytes it takes on a 32-bit ESP8266
(which leaves about 40 KB free to Python); the host fakes of machine/network/dht, which
are C on a board, are counted in it too.
"""
from server.firmware import store_release
from tests.conftest import eventually
from tests.firmware.conftest import node_settings
from tools.release import release_files

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


def test_an_update_is_found_downloaded_and_swapped_in_within_the_heap_budget(board, live_server, token_for,
                                                                            redis_client):
    board.precompile()
    board.configure(**node_settings(live_server.url, token_for("kitchen")))
    store_release(redis_client, "0.2.0", release_files("0.2.0", mpy=True))
    heap = ("-X", f"heapsize={HEAP_BUDGET}")

    noticed = board.run_to_end(*heap)  # the node asks, then resets to install in a clean heap
    installed = board.run_to_end(*heap, script="boot.py", timeout=60)

    assert "update: 0.2.0 is out; restarting to install it" in noticed
    assert "update: 0.2.0 checks; swapping it in and restarting" in installed
    assert "MemoryError" not in noticed + installed and board.process.returncode == 2  # machine.reset()
    board.start(*heap)
    eventually(lambda: live_server.history("kitchen")[-1]["fw"] == "0.2.0")
