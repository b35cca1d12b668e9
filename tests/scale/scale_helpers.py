"""Helpers of the scale-out tests: a Ray head, ``limner serve`` replicas, PostgreSQL schemas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from limner.client import APIClient
from loopback import free_port


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def process_title(pid: int) -> str:
    """The command line of ``pid`` as one string ('' when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@dataclass
class RayHead:
    """A Ray head started for the tests, in a session of its own."""

    address: str
    proc: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        """Every live process of this head (GCS, raylet, workers, actors)."""
        return session_pids(self.proc.pid)

    def actor_pids(self, name: str = "JobWorker") -> list[int]:
        """Processes of this head that host a ``name`` actor."""
        return [p for p in self.pids() if process_title(p).startswith(f"ray::{name}")]


@contextmanager
def ray_head(log_dir: Path) -> Iterator[RayHead]:
    """``ray start --head`` on loopback with 2 CPUs; every process of it is ended afterwards."""
    port = free_port()
    temp_dir = Path(f"/tmp/lr-{uuid.uuid4().hex[:8]}")  # Ray's socket paths must stay short
    log = (log_dir / "ray-head.log").open("wb")
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    cmd += ["--port", str(port), "--num-cpus", "2", "--include-dashboard=false"]
    cmd += ["--disable-usage-stats", "--temp-dir", str(temp_dir)]
    cmd += ["--object-store-memory", str(200 * 1024 * 1024)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(f"127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (log_dir / "ray-head.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "ray start failed:\n" + (log_dir / "ray-head.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        yield head
    finally:
        _end_session(proc)
        log.close()
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def _end_session(proc: subprocess.Popen[bytes]) -> None:
    sid = proc.pid
    for sig, wait in ((signal.SIGTERM, 4.0), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(sid, sig)
        deadline = time.monotonic() + wait
        while session_pids(sid) and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.2)
        if not session_pids(sid):
            break
    proc.wait(timeout=10)
    left = session_pids(sid)
    assert not left, f"Ray processes survived: {left}"


@dataclass
class Replica:
    """A ``limner serve`` subprocess."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_replica(
    name: str, *, data_dir: Path, database_url: str, ray_address: str, log_dir: Path
) -> Replica:
    """A replica on the shared store and Ray cluster, once it answers ``/healthz``."""
    port = free_port()
    env = {
        **os.environ,
        "LIMNER_EXECUTOR": "ray",
        "LIMNER_RAY_ADDRESS": ray_address,
        "LIMNER_RAY_ACTORS": "1",
        "LIMNER_RAY_ACTOR_CPUS": "0.5",
        "LIMNER_WORKERS": "4",
        "LIMNER_REPLICA_ID": name,
        "LIMNER_LEASE_SECONDS": "6",
        "LIMNER_POLL_SECONDS": "0.5",
        "LIMNER_MAX_JOBS_PER_SPACE": "1000",  # the workload queues many jobs of one space
    }
    cmd = [sys.executable, "-m", "limner.cli.main", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir), "--database-url", database_url]
    with (log_dir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"replica {name} exited:\n" + (log_dir / f"{name}.log").read_text()[-3000:]
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Replica(name, url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"replica {name} did not come up")


@dataclass
class Cluster:
    """A Ray head, the shared store and the replicas serving it."""

    head: RayHead
    database_url: str
    data_dir: Path
    log_dir: Path
    key: str
    replicas: list[Replica]

    def start_replica(self, name: str) -> Replica:
        replica = start_replica(
            name,
            data_dir=self.data_dir,
            database_url=self.database_url,
            ray_address=self.head.address,
            log_dir=self.log_dir,
        )
        self.replicas.append(replica)
        return replica

    def client(self, replica: Replica) -> APIClient:
        return APIClient(replica.url, api_key=self.key, timeout=60)
