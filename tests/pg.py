"""A fresh PostgreSQL schema per test: the helper the service and scale-out tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

#: The environment variable `.ci/run` sets to the machine's PostgreSQL.
PG_ENV = "LIMNER_TEST_DATABASE_URL"


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the test PostgreSQL; yields a URL whose search_path is that schema."""
    schema = f"limner_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
