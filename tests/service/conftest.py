"""Service fixtures: a real uvicorn on loopback, SQLite per test or a fresh PostgreSQL schema."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import Running, running

from limner.imaging import encode_png
from limner.settings import Settings
from pg import PG_ENV, postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for SQLite in a temporary data dir, and for a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path, database_url="", workers=4)
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    with postgres_schema(base) as url:
        yield Settings(data_dir=tmp_path, database_url=url, workers=4)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Running]:
    """A fresh service on SQLite."""
    with running(Settings(data_dir=tmp_path, database_url="", workers=4)) as r:
        yield r


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One service on SQLite for a whole module (tests use their own spaces or resources)."""
    data_dir = tmp_path_factory.mktemp("limner-data")
    with running(Settings(data_dir=data_dir, database_url="", workers=4)) as r:
        yield r


@pytest.fixture(scope="session")
def photo_png() -> bytes:
    """The cat photo as PNG."""
    from skimage import data

    return encode_png(data.chelsea())


@pytest.fixture(scope="session")
def small_pngs() -> Callable[[int], list[bytes]]:
    """``n`` distinct small photos (crops of bundled images) as PNG."""
    from skimage import data

    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]

    def make(n: int) -> list[bytes]:
        rng = np.random.default_rng(n)
        out = []
        for i in range(n):
            src = sources[i % len(sources)]
            y, x = rng.integers(0, src.shape[0] - 96), rng.integers(0, src.shape[1] - 96)
            out.append(encode_png(np.ascontiguousarray(src[y : y + 96, x : x + 96])))
        return out

    return make
