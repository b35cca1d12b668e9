"""The service's foreground work (scoring), which background explanation jobs make way for.

A subscription's ``auto_explain`` queues an explanation of every scored image. On a small
machine those explanations would take the CPU that scoring needs while scoring goes on; they
are background work, so a job marked background waits to start until no scoring has been in
progress for a moment (:data:`QUIET_SECONDS`), or at most :data:`MOST_WAIT_SECONDS`, so that
steady scoring never starves them. A job that has started runs to its end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: How long no scoring must have been in progress before a background job starts.
QUIET_SECONDS = 0.2
#: The longest a background job waits for a quiet moment.
MOST_WAIT_SECONDS = 30.0


class Foreground:
    """Counts the foreground calls in progress and when the last one ended."""

    def __init__(
        self, quiet_seconds: float = QUIET_SECONDS, most_wait_seconds: float = MOST_WAIT_SECONDS
    ) -> None:
        self.quiet_seconds = quiet_seconds
        self.most_wait_seconds = most_wait_seconds
        self._cond = threading.Condition()
        self._active = 0
        self._last_end = 0.0

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a foreground call in progress for the ``with`` block."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._last_end = time.monotonic()
                self._cond.notify_all()

    def quiet(self) -> bool:
        """Whether no foreground call is in progress nor ended within the quiet time."""
        with self._cond:
            return self._active == 0 and time.monotonic() - self._last_end >= self.quiet_seconds

    def wait_quiet(self, stop: threading.Event | None = None) -> float:
        """Block until :meth:`quiet`, ``stop`` is set, or the longest wait has passed; return
        the seconds waited."""
        started = time.monotonic()
        deadline = started + self.most_wait_seconds
        with self._cond:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                idle = time.monotonic() - self._last_end
                if self._active == 0 and idle >= self.quiet_seconds:
                    break
                wait = self.quiet_seconds - idle if self._active == 0 else self.quiet_seconds
                self._cond.wait(timeout=max(0.01, min(wait, deadline - time.monotonic())))
        return time.monotonic() - started
