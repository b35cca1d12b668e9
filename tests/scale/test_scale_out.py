"""Two ``limner serve`` replicas on one PostgreSQL, model work in Ray actors.

Every job finishes exactly once; a Ray worker killed mid-job, or a replica killed, loses none.
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import httpx
import pytest
from scale_helpers import Cluster
from sqlalchemy import select

from limner.store import Database
from limner.store.tables import Explanation

#: Explanation settings that keep 50 jobs well under a minute on 2 cores.
FAST = {"method": "kernelshap", "samples": 32, "segmentation": "grid", "segments": 4}
#: Slower jobs, so that a kill lands while they run.
SLOW = {"samples": 256, "segments": 8}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def workload(cluster: Cluster, pngs: list[bytes]) -> dict[str, Any]:
    """A deployment with explainability on, and 60 transactions scored on both replicas."""
    r1, r2 = cluster.replicas[:2]
    with cluster.client(r1) as c1, cluster.client(r2) as c2:
        dep = c1.deployments.create(name="imagenet", model="efficientnet-lite0")
        sub = c1.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(baseline="gray", **FAST)
        ids = [str(s.scoring_id) for s in c1.score_many(dep, pngs[:30])]
        ids += [str(s.scoring_id) for s in c2.score_many(dep, pngs[30:])]
    return {"scoring_ids": ids, "deployment": dep.id}


def rows(cluster: Cluster, ids: list[str]) -> dict[str, Explanation]:
    """The stored jobs ``ids``."""
    db = Database(cluster.database_url)
    try:
        with db.session() as s:
            return {e.id: e for e in s.scalars(select(Explanation).where(Explanation.id.in_(ids)))}
    finally:
        db.close()


def wait_done(cluster: Cluster, ids: list[str], timeout: float) -> dict[str, Explanation]:
    """Wait until every job is finished or failed; the rows."""
    deadline = time.monotonic() + timeout
    while True:
        got = rows(cluster, ids)
        if all(e.status in ("finished", "failed") for e in got.values()):
            return got
        if time.monotonic() > deadline:
            states = {i: (e.status, e.owner, e.attempts) for i, e in got.items()}
            raise AssertionError(f"jobs still open after {timeout}s: {states}")
        time.sleep(0.3)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate()`` until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def completions(url: str, key: str) -> int:
    """Jobs of the key's space whose outcome this replica recorded (its
    ``limner_explanation_seconds_count``)."""
    auth = {"Authorization": f"Bearer {key}"}
    text = httpx.get(f"{url}/metrics", headers=auth, timeout=10).text
    counts = re.findall(r"^limner_explanation_seconds_count\{[^}]*\} (\S+)$", text, re.M)
    return sum(int(float(c)) for c in counts)


def explain(cluster: Cluster, scoring_ids: list[str], **overrides: Any) -> list[str]:
    """Request one explanation per transaction, alternating over the first two replicas."""
    replicas = cluster.replicas[:2]
    clients = [cluster.client(r) for r in replicas]
    try:
        return [
            clients[i % 2].explanations.create(sid, **overrides).id
            for i, sid in enumerate(scoring_ids)
        ]
    finally:
        for c in clients:
            c.close()


@pytest.mark.slow
def test_fifty_jobs_over_two_replicas_each_finish_once(
    cluster: Cluster, workload: dict[str, Any]
) -> None:
    r1, r2 = cluster.replicas[:2]
    before = completions(r1.url, cluster.key) + completions(r2.url, cluster.key)
    started = time.monotonic()
    ids = explain(cluster, workload["scoring_ids"][:50])
    got = wait_done(cluster, ids, timeout=120)
    seconds = time.monotonic() - started

    assert len(got) == 50
    assert [e.id for e in got.values() if e.status != "finished"] == []
    assert {e.attempts for e in got.values()} == {1}, "a job was claimed twice"
    assert {e.owner for e in got.values()} == {"r1", "r2"}, "both replicas ran jobs"
    recorded = completions(r1.url, cluster.key) + completions(r2.url, cluster.key) - before
    assert recorded == 50, f"{recorded} outcomes recorded for 50 jobs"
    print(f"50 jobs on 2 replicas in {seconds:.1f}s")


@pytest.mark.slow
def test_ray_worker_killed_mid_job_still_finishes(
    cluster: Cluster, workload: dict[str, Any]
) -> None:
    ids = explain(cluster, workload["scoring_ids"][50:56], **SLOW)
    wait_for(
        lambda: any(e.status == "running" and e.progress > 0 for e in rows(cluster, ids).values()),
        60,
        "a job to make progress",
    )
    killed = cluster.head.actor_pids()
    assert killed, "no JobWorker actor process found"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    got = wait_done(cluster, ids, timeout=150)
    assert [e.id for e in got.values() if e.status != "finished"] == []
    assert {e.attempts for e in got.values()} == {1}, "the claim held while Ray retried"
    assert not set(cluster.head.actor_pids()) & set(killed), "Ray restarted the actors"


@pytest.mark.slow
def test_replica_killed_other_replicas_finish_its_jobs(
    cluster: Cluster, workload: dict[str, Any]
) -> None:
    r3 = cluster.start_replica("r3")
    with cluster.client(r3) as c3:
        ids = [c3.explanations.create(sid, **SLOW).id for sid in workload["scoring_ids"][56:60]]
    orphaned = wait_for(
        lambda: {
            i for i, e in rows(cluster, ids).items() if e.status == "running" and e.owner == "r3"
        },
        60,
        "r3 to run a job",
    )
    r3.kill()

    got = wait_done(cluster, ids, timeout=150)
    assert [e.id for e in got.values() if e.status != "finished"] == []
    for job_id in orphaned:
        assert got[job_id].owner in {"r1", "r2"}
        assert got[job_id].attempts == 2
    job = next(iter(orphaned))
    pane = httpx.get(
        f"{cluster.replicas[0].url}/v1/explanations/{job}/images/"
        f"{got[job].result['explanations'][0]['class_index']}/positive.png",
        headers={"Authorization": f"Bearer {cluster.key}"},
        timeout=30,
    )
    assert pane.status_code == 200 and pane.content.startswith(b"\x89PNG")
