"""Loopback helpers shared by the tests that start their own servers: a free port, and the wait
until a started ``limner serve`` answers ``/healthz``."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress

import httpx


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    url: str, proc: subprocess.Popen, *, seconds: float, log: Callable[[], str] = lambda: ""
) -> None:
    """Return once ``url/healthz`` answers 200; fail with the server's log tail when ``proc``
    exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError("limner serve exited:\n" + log()[-3000:])
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("limner serve did not come up:\n" + log()[-3000:])
        time.sleep(0.2)
