"""Per-space caps on work in flight: one space's busy models cannot take every thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from limner.errors import RateLimitError


class SpaceSlots:
    """At most ``per_space`` calls of one space at once; the next one is refused with 429.

    Scoring waits on a model worker while it holds a server thread; the cap keeps a space whose
    model is slow (or never answers) from holding more than ``per_space`` of them, so other
    spaces, ``/healthz`` and the dashboard always find threads free.
    """

    def __init__(self, per_space: int, *, what: str, setting: str) -> None:
        self.per_space = per_space
        self.what = what
        self.setting = setting
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    @contextmanager
    def take(self, space_id: str) -> Iterator[None]:
        """Hold one of the space's slots for the ``with`` block (429 when none is free)."""
        with self._lock:
            busy = self._busy.get(space_id, 0)
            if busy >= self.per_space:
                raise RateLimitError(
                    f"this space has {busy} {self.what} in progress, as many as it may have at "
                    f"once ({self.setting}); retry when one has finished",
                    retry_after=1,
                )
            self._busy[space_id] = busy + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._busy[space_id] - 1
                if left:
                    self._busy[space_id] = left
                else:
                    del self._busy[space_id]
