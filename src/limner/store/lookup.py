"""Space-scoped lookups: the one query behind every "this id, if it is in this space"."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from limner.store.db import Database
from limner.store.tables import Deployment, Explanation, Subscription, Transaction

Owned = TypeVar("Owned", Deployment, Subscription, Transaction, Explanation)


def find_in_space(db: Database, table: type[Owned], row_id: str, space_id: str) -> Owned | None:
    """The row ``row_id`` of ``table`` if it belongs to ``space_id``; None otherwise.

    Callers answer both cases (no such id, another space's id) the same way: not found.
    """
    with db.session() as s:
        return s.scalar(select(table).where(table.id == row_id, table.space_id == space_id))


def list_in_space(db: Database, table: type[Owned], space_id: str) -> list[Owned]:
    """Every row of ``table`` in ``space_id``, oldest first."""
    with db.session() as s:
        query = select(table).where(table.space_id == space_id).order_by(table.created_at)
        return list(s.scalars(query))
