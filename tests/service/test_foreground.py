"""Background work makes way for scoring: :class:`limner.jobs.foreground.Foreground` holds a
background job back while a scoring call is in progress and for its quiet time after, never
longer than its longest wait, and not once the runner stops."""

from __future__ import annotations

import threading
import time

from limner.jobs.foreground import Foreground


def test_a_background_wait_ends_a_quiet_time_after_the_last_scoring() -> None:
    fg = Foreground(quiet_seconds=0.2, most_wait_seconds=10)
    waited: list[float] = []
    with fg.busy():
        waiter = threading.Thread(target=lambda: waited.append(fg.wait_quiet()))
        waiter.start()
        time.sleep(0.4)
        assert waiter.is_alive() and not fg.quiet()  # held back while scoring goes on
    released = time.monotonic()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and 0.6 <= waited[0] < 5
    assert time.monotonic() - released >= 0.19  # the quiet time after the last call
    assert fg.quiet()


def test_steady_scoring_never_starves_background_work() -> None:
    fg = Foreground(quiet_seconds=0.2, most_wait_seconds=0.5)
    with fg.busy():
        assert 0.45 <= fg.wait_quiet() < 2


def test_a_stopping_runner_does_not_wait() -> None:
    fg = Foreground(quiet_seconds=0.2, most_wait_seconds=30)
    stop = threading.Event()
    stop.set()
    with fg.busy():
        assert fg.wait_quiet(stop) < 1
