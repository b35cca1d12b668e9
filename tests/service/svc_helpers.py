"""Helpers of the service tests: run a real server on loopback, make PostgreSQL schemas."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from limner.client import APIClient
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key
from loopback import free_port  # noqa: F401 (re-exported to the tests)

#: Explanation settings that keep tests quick.
FAST = {"samples": 64, "segmentation": "grid", "segments": 8, "baseline": "gray"}


@dataclass
class Running:
    """A running service and an admin key of its space ``default`` (the operator's own)."""

    url: str
    key: str
    settings: Settings
    server: EmbeddedServer

    def client(self, key: str | None = None) -> APIClient:
        return APIClient(self.url, api_key=key or self.key)

    def new_key(self, space: str, role: str = "tenant") -> str:
        """A key of ``space`` (a tenant's, unless ``role`` says otherwise)."""
        db = Database(self.settings.resolved_database_url())
        try:
            return create_key(db, space, role=role)
        finally:
            db.close()


@contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """Serve ``settings`` on a free loopback port for the block."""
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default", role="admin")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        yield Running(server.url, key, settings, server)


def start_server(
    data_dir: Path, port: int, workers: int = 1
) -> tuple[subprocess.Popen[str], str | None]:
    """Start a real ``limner serve`` subprocess on SQLite in ``data_dir``; wait until it answers.

    Returns the process and the API key it printed (only the first start prints one).
    """
    env = {**os.environ, "LIMNER_WORKERS": str(workers), "LIMNER_DATABASE_URL": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "limner.cli.main",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"limner serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("limner serve did not come up")
    key = None
    if proc.stdout is not None:
        os.set_blocking(proc.stdout.fileno(), False)
        key = (proc.stdout.readline() or "").strip() or None
    return proc, key
