"""Claims and leases of explanation jobs shared by several runners (replicas) on one store.

No Ray here: a fake executor stands in for the cluster, so these run on SQLite and, when
configured, PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from limner.jobs import FINISHED, QUEUED, RUNNING, JobRunner
from limner.settings import Settings
from limner.store import Database, FsspecBlobStore, LocalBlobStore, open_blob_store
from limner.store.tables import Explanation, Space, Subscription, Transaction
from pg import PG_ENV, postgres_schema


class FakeCluster:
    """An executor whose model work is a function of the test (counts its calls)."""

    def __init__(self, work: Callable[[str, int], None] | None = None) -> None:
        self.work = work
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[[str], None], job_id: str) -> None:
        t = threading.Thread(target=fn, args=(job_id,))
        self.threads.append(t)
        t.start()

    def shutdown(self, wait: bool = True) -> None:
        pass

    def explain(self, job_id: str, attempt: int) -> tuple[dict[str, Any], dict[str, str]]:
        with self._lock:
            self.calls.append((job_id, attempt))
        if self.work is not None:
            self.work(job_id, attempt)
        return {"attempt": attempt}, {}

    def join(self) -> None:
        for t in list(self.threads):
            t.join(timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database with one transaction to explain."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'claims.db'}"
        yield from _seeded(url)
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    with postgres_schema(base) as url:
        yield from _seeded(url)


def _seeded(url: str) -> Iterator[Database]:
    database = Database(url)
    database.migrate()
    with database.session() as s:
        s.add(Space(id="s", name="default"))
        s.flush()
        s.add(Subscription(id="sub", space_id="s", name="m", model_metadata={}, explainability={}))
        s.flush()
        s.add(
            Transaction(
                id="tx",
                scoring_id="t1",
                space_id="s",
                subscription_id="sub",
                image_blob="0" * 64,
                width=1,
                height=1,
                label="a",
                class_index=0,
                probability=1.0,
                probabilities=[1.0],
            )
        )
    try:
        yield database
    finally:
        database.close()


def new_job(db: Database, job_id: str = "job") -> str:
    with db.session() as s:
        s.add(
            Explanation(
                id=job_id,
                space_id="s",
                transaction_id="tx",
                status=QUEUED,
                settings={},
                panes={},
                attempts=0,
                progress=0.0,
            )
        )
    return job_id


def job(db: Database, job_id: str = "job") -> Explanation:
    with db.session() as s:
        row = s.get(Explanation, job_id)
        assert row is not None
        return row


def runner(db: Database, name: str, cluster: FakeCluster, **kw: Any) -> JobRunner:
    done: list[str] = kw.pop("done", [])
    return JobRunner(
        db,
        LocalBlobStore(Path("/tmp")),
        None,
        cluster,
        max_pixels=1,
        replica_id=name,
        on_done=lambda j, _s: done.append(j),
        **kw,
    )


def test_one_of_many_concurrent_claims_wins(db: Database) -> None:
    new_job(db)
    cluster = FakeCluster(lambda *_: time.sleep(0.2))
    done: list[str] = []
    runners = [runner(db, f"r{i}", cluster, done=done) for i in range(2)]
    threads = [threading.Thread(target=runners[i % 2].run, args=("job",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    row = job(db)
    assert (row.status, row.attempts, row.result) == (FINISHED, 1, {"attempt": 1})
    assert len(cluster.calls) == 1 and done == ["job"]


def test_expired_lease_is_taken_over_and_the_stale_outcome_dropped(db: Database) -> None:
    new_job(db)
    release = threading.Event()
    slow = FakeCluster(lambda _j, attempt: attempt == 1 and release.wait(30))
    done: list[str] = []
    a = runner(db, "a", slow, lease_seconds=0.3, done=done)  # never renews: a stalled replica
    b = runner(db, "b", slow, lease_seconds=30, done=done)
    a.enqueue("job")
    while job(db).status != RUNNING:
        time.sleep(0.02)
    time.sleep(0.5)
    assert b.poll() == 1
    while job(db).status != FINISHED:
        time.sleep(0.02)
    release.set()
    slow.join()
    row = job(db)
    assert (row.owner, row.attempts, row.result) == ("b", 2, {"attempt": 2})
    assert done == ["job"], "only the current claim records an outcome"


def test_a_renewed_lease_is_left_alone(db: Database) -> None:
    new_job(db)
    release = threading.Event()
    cluster = FakeCluster(lambda *_: release.wait(30))
    a = runner(db, "a", cluster, lease_seconds=0.6, poll_seconds=0.1)
    b = runner(db, "b", cluster, lease_seconds=0.6, poll_seconds=0.1)
    a.resume()  # enqueues the job and keeps renewing its lease
    time.sleep(1.5)
    assert job(db).owner == "a"
    assert b.poll() == 0
    release.set()
    cluster.join()
    a.close()
    assert (job(db).status, job(db).attempts) == (FINISHED, 1)


def test_a_restarted_replica_takes_its_running_jobs_back_at_once(db: Database) -> None:
    new_job(db)
    first = runner(db, "local", FakeCluster(lambda *_: time.sleep(60)))
    assert first._claim("job") == 1  # claimed, then the process died
    again = FakeCluster()
    second = runner(db, "local", again, lease_seconds=30)
    other = runner(db, "other", FakeCluster(), lease_seconds=30)
    assert other.poll() == 0, "another replica waits for the lease"
    assert second.resume() == 1
    again.join()
    second.close()
    assert (job(db).status, job(db).attempts) == (FINISHED, 2)


def test_default_replica_ids(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).resolved_replica_id() == "local"
    pg = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db")
    assert pg.resolved_replica_id() != pg.resolved_replica_id()


def test_blob_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path / "b")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path / 'c'}"), LocalBlobStore)
    store = open_blob_store("memory://limner-test/blobs")
    assert isinstance(store, FsspecBlobStore)
    key = store.put(b"pane")
    assert store.put(b"pane") == key
    assert store.get(key) == b"pane" and store.exists(key)
    assert not store.exists("0" * 64) and not store.exists("nope")
