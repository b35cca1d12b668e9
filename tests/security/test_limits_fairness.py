"""The job runner's fair share: while another space has jobs waiting, a space runs at most its
share of the workers here; alone, it may use them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from limner.jobs import QUEUED, JobRunner
from limner.store import Database, new_id
from limner.store.blobs import LocalBlobStore
from limner.store.tables import Explanation, Space, Subscription, Transaction


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'fair.db'}")
    database.migrate()
    yield database
    database.close()


def _jobs(db: Database, space: str, n: int) -> list[str]:
    """``n`` queued explanation jobs of a new space ``space``."""
    space_id, sub_id, tx_id = new_id(), new_id(), new_id()
    ids = [new_id() for _ in range(n)]
    with db.session() as s:
        s.add(Space(id=space_id, name=space))
        s.flush()
        s.add(
            Subscription(
                id=sub_id,
                space_id=space_id,
                name="ext",
                scoring_url="http://scorer.invalid/v2/models/m",
                model_metadata={"labels": ["a", "b"]},
                explainability={"enabled": True},
            )
        )
        s.flush()
        s.add(
            Transaction(
                id=tx_id,
                scoring_id="t1",
                space_id=space_id,
                subscription_id=sub_id,
                image_blob="0" * 64,
                width=1,
                height=1,
                label="a",
                class_index=0,
                probability=1.0,
                probabilities=[1.0, 0.0],
            )
        )
        s.flush()
        for job_id in ids:
            s.add(
                Explanation(
                    id=job_id,
                    space_id=space_id,
                    transaction_id=tx_id,
                    status=QUEUED,
                    settings={},
                    panes={},
                    attempts=0,
                )
            )
    return ids


def test_a_space_waits_beyond_its_share_only_while_another_space_waits(
    db: Database, tmp_path: Path
) -> None:
    runner = JobRunner(
        db, LocalBlobStore(tmp_path / "blobs"), None, None, max_pixels=10**6, fair_share=1
    )
    a1, a2, a3 = _jobs(db, "flooding", 3)
    assert runner._over_fair_share(a1) is False  # a1 now runs here
    assert runner._over_fair_share(a2) is False  # alone, a space may use every worker
    (b1,) = _jobs(db, "patient", 1)
    assert runner._over_fair_share(a3) is True  # another space waits: a3 stays queued
    assert runner._over_fair_share(b1) is False  # b1 runs beside the flooding space's jobs
