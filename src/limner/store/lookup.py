"""Space-scoped lookups: the one query behind every "this id, if it is in this space"."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from limner.store.db import Database
from limner.store.tables import (
    Deployment,
    ExplainerJob,
    Explanation,
    Subscription,
    Transaction,
)

Owned = TypeVar("Owned", Deployment, Subscription, Transaction, Explanation, ExplainerJob)


def find_in_space(db: Database, table: type[Owned], row_id: str, space_id: str) -> Owned | None:
    """The row ``row_id`` of ``table`` if it belongs to ``space_id``; None otherwise.

    Transactions are named by their ``scoring_id`` (unique within a space only; their ``id`` is
    internal); every other table by its ``id``. Callers answer both cases (no such id, another
    space's id) the same way: not found.
    """
    key = Transaction.scoring_id if table is Transaction else table.id
    with db.session() as s:
        return s.scalar(select(table).where(key == row_id, table.space_id == space_id))


def scoring_ids(db: Database, transaction_ids: list[str]) -> dict[str, str]:
    """The ``scoring_id`` of each internal transaction id."""
    if not transaction_ids:
        return {}
    with db.session() as s:
        rows = s.execute(
            select(Transaction.id, Transaction.scoring_id).where(
                Transaction.id.in_(set(transaction_ids))
            )
        )
        return {tid: sid for tid, sid in rows}


def list_in_space(db: Database, table: type[Owned], space_id: str) -> list[Owned]:
    """Every row of ``table`` in ``space_id``, oldest first."""
    with db.session() as s:
        query = select(table).where(table.space_id == space_id).order_by(table.created_at)
        return list(s.scalars(query))
