"""Helpers of the resource-limit and leak attack tests: a real ``limner serve`` on loopback,
its memory read from ``/proc``, a raw chunked uploader, a scorer that never answers."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from limner.store import Database, create_key
from loopback import free_port, wait_healthy

#: The memory an attack may add to the idle server.
MEMORY_BUDGET = int(1.5 * 1024**3)


@dataclass
class Server:
    """A ``limner serve`` subprocess, the key it printed on first start, its data dir."""

    url: str
    port: int
    key: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    keys: dict[str, str] = field(default_factory=dict)

    def new_key(self, space: str) -> str:
        """A new tenant key of ``space`` (created in the server's database)."""
        db = Database(f"sqlite:///{self.data_dir / 'limner.db'}")
        try:
            return create_key(db, space)
        finally:
            db.close()

    def auth(self, key: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header of ``key`` (default: the first key)."""
        return {"Authorization": f"Bearer {key or self.key}"}

    def http(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTP client of this server with ``key``."""
        return httpx.Client(base_url=self.url, headers=self.auth(key), timeout=120, **kwargs)  # type: ignore[arg-type]


@contextmanager
def limner_serve(tmp: Path, **env: str) -> Iterator[Server]:
    """``limner serve`` on a free loopback port with ``LIMNER_*`` settings ``env``."""
    port = free_port()
    data_dir = tmp / "data"  # created by the server itself
    log_path = tmp / "serve.log"
    full_env = {**os.environ, "LIMNER_WORKERS": "2", **env}
    cmd = [sys.executable, "-m", "limner.cli.main", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, seconds=120, log=log_path.read_text)
        found = re.search(r"^(lmn_\S+)$", log_path.read_text(), re.MULTILINE)
        assert found, "the first start printed no key"
        yield Server(url, port, found.group(1), data_dir, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # jobs blocked on a scorer that never answers
            proc.kill()
            proc.wait(timeout=10)


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now (``VmRSS``)."""
    return _status_kb(pid, "VmRSS") * 1024


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {name}")


class PeakMemory:
    """The highest resident memory of ``pid`` while the block runs: ``VmRSS`` sampled every
    10 ms, and ``VmHWM`` (reset at the start through ``clear_refs``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle = rss_bytes(pid)
        self.peak = self.idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with suppress(OSError, AssertionError):
                self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakMemory:
        with suppress(OSError):  # 5: reset the peak resident size (VmHWM)
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.idle = rss_bytes(self.pid)
        self.peak = self.idle
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb(self.pid, "VmHWM") * 1024)

    @property
    def growth(self) -> int:
        """Bytes the peak lies above the idle server."""
        return self.peak - self.idle

    def report(self, what: str) -> str:
        """One line for the test log."""
        mb = 1024**2
        return (
            f"{what}: idle {self.idle / mb:.0f} MB, peak {self.peak / mb:.0f} MB, "
            f"growth {self.growth / mb:.0f} MB"
        )


@dataclass
class UploadOutcome:
    """What a raw chunked upload got back."""

    status: int | None
    sent: int
    headers: str = ""


def chunked_upload(
    port: int,
    path: str,
    total: int,
    *,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    timeout: float = 30.0,
) -> UploadOutcome:
    """POST a ``total``-byte multipart body with ``Transfer-Encoding: chunked``, generated
    lazily 1 MiB at a time, stopping as soon as the server answers (or ``timeout`` passes)."""
    boundary = "limner-attack"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.zip"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        block = b"\0" * (1 << 20)
        left = total - len(head)
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece

    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Transfer-Encoding: chunked",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    deadline = time.monotonic() + timeout
    sent = 0
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    ) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for piece in body():
                if select.select([sock], [], [], 0)[0] or time.monotonic() > deadline:
                    break  # the server answered early (or we gave up sending)
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (TimeoutError, ConnectionError):
            pass
        status, head = _read_status(sock, deadline)
        return UploadOutcome(status, sent, head)


def _read_status(sock: socket.socket, deadline: float) -> tuple[int | None, str]:
    data = b""
    with suppress(OSError):
        while b"\r\n\r\n" not in data and time.monotonic() < deadline + 10:
            sock.settimeout(max(0.1, deadline + 10 - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = re.match(r"HTTP/1\.[01] (\d{3})", head)
    return (int(found.group(1)) if found else None), head


def solid_png(width: int, height: int) -> bytes:
    """A one-colour grey PNG of ``width``×``height`` (compresses about 1000:1)."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


@contextmanager
def silent_scorer() -> Iterator[str]:
    """A loopback Open Inference URL whose server accepts connections and never answers:
    explanation jobs against it stay running (up to the client's timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v2/models/silent"
    finally:
        listener.close()
