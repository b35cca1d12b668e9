"""The executor registry: builds the executor a deployment names (``LIMNER_EXECUTOR``).

It lives apart from :mod:`limner.jobs.executor` (the interface and the thread pool) because the
Ray executor uses the job runner, which uses that interface: the registry may import the
implementations, the interface must import neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limner.jobs.executor import Executor, ThreadExecutor

if TYPE_CHECKING:
    from limner.settings import Settings


def make_executor(kind: str, workers: int, settings: Settings | None = None) -> Executor:
    """The executor named ``kind``: ``thread``, or ``ray`` (needs ``settings`` and Ray)."""
    if kind == "thread":
        return ThreadExecutor(workers)
    if kind == "ray":
        if settings is None:
            raise ValueError("the ray executor needs the service settings")
        from limner.jobs.ray_executor import RayExecutor

        return RayExecutor(settings)
    raise ValueError(f"unknown executor {kind!r}; use 'thread' or 'ray'")
