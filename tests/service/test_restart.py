"""SIGKILL a real ``limner serve`` mid-work, start it again: every job finishes, nothing is lost."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from svc_helpers import free_port, start_server

from limner.client import APIClient
from limner.errors import LimnerError


@pytest.mark.slow
def test_sigkill_then_restart_finishes_every_job(tmp_path: Path, small_pngs) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, key = start_server(tmp_path, port)
    assert key and key.startswith("lmn_"), "the first start prints a key for space 'default'"
    try:
        client = APIClient(url, api_key=key)
        dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(samples=128, segmentation="grid", segments=12, baseline="gray")
        ids = [s.scoring_id for s in client.score_many(dep, small_pngs(6))]
        jobs = [client.explanations.create(str(sid)) for sid in ids]

        acknowledged: list[str] = []
        stop = threading.Event()

        def keep_scoring() -> None:
            images = small_pngs(40)
            with APIClient(url, api_key=key) as c:
                for png in images:
                    if stop.is_set():
                        return
                    try:
                        acknowledged.append(str(c.score(dep, png).scoring_id))
                    except LimnerError:
                        return  # the server went away mid-request: not acknowledged

        scorer = threading.Thread(target=keep_scoring)
        scorer.start()
        deadline = time.monotonic() + 60
        while not any(j.refresh().status == "running" for j in jobs):
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        scorer.join(timeout=30)
        states = {j.status for j in jobs}
        assert "queued" in states or "running" in states

        proc, again = start_server(tmp_path, port)
        assert again is None, "a key is only created when there is none"
        for job in jobs:
            job.wait(timeout=150)
            assert job.status == "finished"
        stored = {t["scoring_id"] for t in sub.transactions(limit=1000)}
        assert set(ids) | set(acknowledged) <= stored
        client.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
