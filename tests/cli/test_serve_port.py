"""``limner serve`` on a port another process holds fails at once, in one line, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from loopback import free_port, wait_healthy


def serve(port: int, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LIMNER_DATABASE_URL": ""}
    return subprocess.Popen(
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
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_taken_port_exits_2_before_claiming_to_serve(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = serve(port, tmp_path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(port) in lines[0], err
    assert "serving" not in err and not out  # no key printed, nothing said about serving


def test_a_free_port_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(port, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, seconds=90)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
