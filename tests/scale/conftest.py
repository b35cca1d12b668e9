"""Scale-out fixtures: one Ray head and two ``limner serve`` replicas on PostgreSQL per module."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import numpy as np
import pytest
from scale_helpers import Cluster, ray_head

from limner.imaging import encode_png
from limner.store import Database, create_key
from pg import PG_ENV, postgres_schema

#: Why the cluster tests cannot run here, or None.
CLUSTER_SKIP = (
    f"scale-out tests need PostgreSQL: set {PG_ENV}"
    if not os.environ.get(PG_ENV)
    else "scale-out tests need Ray: pip install 'limner[ray]'"
    if importlib.util.find_spec("ray") is None
    else None
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Ray head, one PostgreSQL schema, one shared data folder, replicas ``r1`` and ``r2``."""
    if CLUSTER_SKIP:
        pytest.skip(CLUSTER_SKIP)
    base = os.environ[PG_ENV]
    log_dir = tmp_path_factory.mktemp("logs")
    data_dir = tmp_path_factory.mktemp("shared")
    with postgres_schema(base) as url, ray_head(log_dir) as head:
        db = Database(url)
        db.migrate()
        key = create_key(db, "default")
        db.close()
        c = Cluster(head, url, data_dir, log_dir, key, [])
        try:
            c.start_replica("r1")
            c.start_replica("r2")
            yield c
        finally:
            for r in c.replicas:
                if r.proc.poll() is None:
                    r.proc.terminate()
                    try:
                        r.proc.wait(timeout=20)
                    except Exception:
                        r.kill()


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    """60 distinct small photos (crops of bundled images) as PNG."""
    from skimage import data

    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(60):
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - 96), rng.integers(0, src.shape[1] - 96)
        out.append(encode_png(np.ascontiguousarray(src[y : y + 96, x : x + 96])))
    return out
