"""make bench steers loopback's receive work to the browsers' core while it runs, and
leaves the machine's settings as it found them, whatever happens meanwhile."""
import pytest

from tools.bench import RECEIVE_BACKLOG, RECEIVE_STEERING, STEERED_BACKLOG, receiving_on


def settings():
    return [path.read_text().strip() for path in (RECEIVE_STEERING, RECEIVE_BACKLOG)]


@pytest.mark.skipif(not RECEIVE_STEERING.exists(), reason="no receive packet steering on this machine")
def test_the_benchmark_steers_loopback_while_it_runs_and_puts_it_back_after_a_crash():
    before = settings()

    with pytest.raises(KeyboardInterrupt), receiving_on(1) as steered:
        during = settings()
        raise KeyboardInterrupt  # the user stops make bench

    assert settings() == before
    if steered:  # as root
        assert int(during[0].replace(",", ""), 16) == 2 and int(during[1]) >= STEERED_BACKLOG
    else:
        assert during == before
