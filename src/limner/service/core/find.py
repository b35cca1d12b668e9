"""Finding transactions and explanations: the filters of the lists, the export, feedback.

Every query starts from the caller's space. Filters on columns run in SQL; the filters that
read an explanation's RESULT (class, settled, warnings, fit R²) run here on the rows the SQL
filters left, before the page is cut, so ``total``, ``limit`` and ``offset`` stay exact.
An id of another space in a filter matches nothing, like an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update

from limner.errors import InvalidInputError
from limner.explain import DEFAULT_METHOD
from limner.jobs import FAILED, FINISHED
from limner.service.core.views import explanation_view, transaction_view
from limner.service.schemas import (
    ExplanationFilter,
    ExplanationRead,
    TransactionFilter,
    TransactionList,
)
from limner.service.state import ServiceState
from limner.store import Database, SpaceRef
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

#: Rows read per round trip when a filter reads RESULTs.
_BATCH = 500


# --- transactions ------------------------------------------------------------------------------


def space_labels(db: Database, space_id: str, subscription_id: str | None = None) -> set[str]:
    """The labels of the space's models (of one subscription's when given)."""
    with db.session() as s:
        query = select(Subscription.model_metadata).where(Subscription.space_id == space_id)
        if subscription_id is not None:
            query = query.where(Subscription.id == subscription_id)
        metas = list(s.scalars(query))
        if subscription_id is None:
            metas += list(
                s.scalars(select(Deployment.model_metadata).where(Deployment.space_id == space_id))
            )
    return {str(label) for meta in metas for label in (meta or {}).get("labels", [])}


def _check_labels(
    state: ServiceState, space: SpaceRef, flt: TransactionFilter, sub: Subscription | None
) -> None:
    """Refuse (422) a label filter that no model of the selection has: a typo, never an
    empty answer that looks like "none of those"."""
    given = [(name, v) for name, v in (("label", flt.label), ("true_label", flt.true_label)) if v]
    if not given:
        return
    if sub is not None:
        labels, whose = {str(x) for x in sub.model_metadata.get("labels", [])}, "the model's"
    else:
        labels = space_labels(state.db, space.id, flt.subscription_id)
        whose = "the subscription's" if flt.subscription_id else "this space's models'"
        if flt.subscription_id and not labels:
            return  # no such subscription here: the filter matches nothing
    for name, value in given:
        if value not in labels:
            raise InvalidInputError(f"{name}: {value!r} is not one of {whose} labels")


def transaction_conditions(
    space: SpaceRef, flt: TransactionFilter, sub: Subscription | None = None
) -> list[ColumnElement[bool]]:
    """SQL conditions of ``flt`` on :class:`Transaction` (inside ``space``, of ``sub``)."""
    where: list[ColumnElement[bool]] = [Transaction.space_id == space.id]
    if sub is not None:
        where.append(Transaction.subscription_id == sub.id)
    if flt.subscription_id is not None:
        where.append(Transaction.subscription_id == flt.subscription_id)
    if flt.label is not None:
        where.append(Transaction.label == flt.label)
    if flt.true_label is not None:
        where.append(Transaction.feedback == flt.true_label)
    if flt.misclassified is not None:
        differs = Transaction.feedback != Transaction.label
        where.append(Transaction.feedback.is_not(None))
        where.append(differs if flt.misclassified else Transaction.feedback == Transaction.label)
    if flt.deployment_id is not None:
        where.append(
            Transaction.subscription_id.in_(
                select(Subscription.id).where(
                    Subscription.space_id == space.id,
                    Subscription.deployment_id == flt.deployment_id,
                )
            )
        )
    if flt.since is not None:
        where.append(Transaction.created_at >= flt.since)
    if flt.until is not None:
        where.append(Transaction.created_at < flt.until)
    if flt.explained is not None:
        live = exists().where(
            Explanation.transaction_id == Transaction.id, Explanation.status != FAILED
        )
        where.append(live if flt.explained else ~live)
    if flt.external_id is not None:
        where.append(Transaction.external_id == flt.external_id)
    return where


def find_transactions(
    state: ServiceState,
    space: SpaceRef,
    flt: TransactionFilter,
    *,
    limit: int,
    offset: int = 0,
    sub: Subscription | None = None,
) -> tuple[list[Transaction], int]:
    """A page of the transactions ``flt`` selects, newest first, and how many it selects
    (422 for a label no model of the selection has)."""
    _check_labels(state, space, flt, sub)
    where = transaction_conditions(space, flt, sub)
    with state.db.session() as s:
        total = int(s.scalar(select(func.count()).select_from(Transaction).where(*where)) or 0)
        rows = list(
            s.scalars(
                select(Transaction)
                .where(*where)
                .order_by(Transaction.created_at.desc(), Transaction.seq.desc())
                .limit(limit)
                .offset(offset)
            )
        )
    return rows, total


@dataclass(frozen=True)
class TransactionContext:
    """What the views of a page of transactions need beside the rows."""

    labels: dict[str, list[str]]
    deployments: dict[str, str | None]
    explained: set[str]


def transaction_context(db: Database, rows: list[Transaction]) -> TransactionContext:
    """The labels and deployment of each row's subscription, and which rows are explained."""
    sub_ids = {t.subscription_id for t in rows}
    tx_ids = [t.id for t in rows]
    labels: dict[str, list[str]] = {}
    deployments: dict[str, str | None] = {}
    explained: set[str] = set()
    if not rows:
        return TransactionContext(labels, deployments, explained)
    with db.session() as s:
        for sub_id, meta, dep_id in s.execute(
            select(Subscription.id, Subscription.model_metadata, Subscription.deployment_id).where(
                Subscription.id.in_(sub_ids)
            )
        ):
            labels[sub_id] = [str(x) for x in (meta or {}).get("labels", [])]
            deployments[sub_id] = dep_id
        explained = set(
            s.scalars(
                select(Explanation.transaction_id)
                .where(Explanation.transaction_id.in_(tx_ids), Explanation.status != FAILED)
                .distinct()
            )
        )
    return TransactionContext(labels, deployments, explained)


def transaction_page(
    state: ServiceState, rows: list[Transaction], total: int, limit: int, offset: int, base: str
) -> TransactionList:
    """A page of transactions as JSON (``base``: the service's URL, for the image links)."""
    ctx = transaction_context(state.db, rows)
    return TransactionList(
        transactions=[
            transaction_view(
                t,
                ctx.labels.get(t.subscription_id, []),
                base,
                deployment_id=ctx.deployments.get(t.subscription_id),
                explained=t.id in ctx.explained,
            )
            for t in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


def set_feedback(
    state: ServiceState, tx: Transaction, labels: list[str], label: str | None
) -> Transaction:
    """Record the true label of ``tx`` (``None`` clears it); 422 for a label that is not one
    of its model's."""
    if label is not None and label not in labels:
        shown = ", ".join(repr(x) for x in labels[:10]) + (" …" if len(labels) > 10 else "")
        raise InvalidInputError(f"label {label!r} is not one of the model's labels ({shown})")
    with state.db.session() as s:
        s.execute(
            update(Transaction)
            .where(Transaction.seq == tx.seq)
            .values(feedback=label)
            .execution_options(synchronize_session=False)
        )
        row = s.get(Transaction, tx.seq)
    assert row is not None
    return row


# --- explanations ------------------------------------------------------------------------------


def _check_class(db: Database, space: SpaceRef, value: str | None) -> None:
    if value is None or value.isdigit():
        return
    if value not in space_labels(db, space.id):
        raise InvalidInputError(
            f"class: {value!r} is neither a class index nor a label of this space's models"
        )


def explanation_conditions(space: SpaceRef, flt: ExplanationFilter) -> list[ColumnElement[bool]]:
    """SQL conditions of ``flt`` on :class:`Explanation` (the RESULT filters apart)."""
    where: list[ColumnElement[bool]] = [Explanation.space_id == space.id]
    if flt.scoring_id is not None:
        where.append(
            Explanation.transaction_id.in_(
                select(Transaction.id).where(
                    Transaction.space_id == space.id, Transaction.scoring_id == flt.scoring_id
                )
            )
        )
    if flt.status is not None:
        where.append(Explanation.status == flt.status)
    if flt.on_result:
        where.append(Explanation.status == FINISHED)
    if flt.method is not None:
        method = func.coalesce(Explanation.settings["method"].as_string(), DEFAULT_METHOD)
        where.append(method == flt.method)
    if flt.requested_by is not None:
        where.append(
            or_(
                Explanation.requested_by == flt.requested_by,
                Explanation.requested_by_key == flt.requested_by,
            )
        )
    if flt.deployment_id is not None:
        own = select(Transaction.id).where(
            Transaction.space_id == space.id,
            Transaction.subscription_id.in_(
                select(Subscription.id).where(
                    Subscription.space_id == space.id,
                    Subscription.deployment_id == flt.deployment_id,
                )
            ),
        )
        where.append(
            or_(
                Explanation.deployment_id == flt.deployment_id,
                and_(Explanation.deployment_id.is_(None), Explanation.transaction_id.in_(own)),
            )
        )
    if flt.since is not None:
        where.append(Explanation.created_at >= flt.since)
    if flt.until is not None:
        where.append(Explanation.created_at < flt.until)
    return where


def result_matches(result: dict[str, Any] | None, flt: ExplanationFilter) -> bool:
    """Whether a RESULT passes the filters that read it (class, settled, warnings, R²)."""
    if not flt.on_result:
        return True
    items = [i for i in (result or {}).get("explanations", []) if isinstance(i, dict)]
    if not items:
        return False
    if flt.class_ is not None:
        want = flt.class_
        if not any(
            str(i.get("label")) == want or (want.isdigit() and i.get("class_index") == int(want))
            for i in items
        ):
            return False
    if flt.settled is not None and settled_verdict(items) != flt.settled:
        return False
    if flt.warnings is not None and any(bool(i.get("warnings")) for i in items) != flt.warnings:
        return False
    if flt.max_r2 is not None:
        r2 = [float(i["fit_r2"]) for i in items if isinstance(i.get("fit_r2"), (int, float))]
        if not r2 or min(r2) >= flt.max_r2:
            return False
    return True


_NEWEST = (Explanation.created_at.desc(), Explanation.id.desc())


def matching_explanation_ids(
    state: ServiceState, space: SpaceRef, flt: ExplanationFilter
) -> Iterator[str]:
    """The ids of every explanation ``flt`` selects, newest first."""
    _check_class(state.db, space, flt.class_)
    where = explanation_conditions(space, flt)
    with state.db.session() as s:
        if not flt.on_result:
            yield from s.scalars(
                select(Explanation.id)
                .where(*where)
                .order_by(*_NEWEST)
                .execution_options(yield_per=_BATCH)
            )
            return
        rows = s.execute(
            select(Explanation.id, Explanation.result)
            .where(*where)
            .order_by(*_NEWEST)
            .execution_options(yield_per=_BATCH)
        )
        for exp_id, result in rows:
            if result_matches(result, flt):
                yield exp_id


def find_explanations(
    state: ServiceState,
    space: SpaceRef,
    flt: ExplanationFilter,
    *,
    limit: int | None,
    offset: int = 0,
) -> tuple[list[Explanation], int]:
    """A page of the explanations ``flt`` selects, newest first, and how many it selects
    (``limit`` None: all of them)."""
    if not flt.on_result:
        _check_class(state.db, space, flt.class_)
        where = explanation_conditions(space, flt)
        with state.db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Explanation).where(*where)) or 0)
            query = select(Explanation).where(*where).order_by(*_NEWEST).offset(offset)
            if limit is not None:
                query = query.limit(limit)
            return list(s.scalars(query)), total
    ids = list(matching_explanation_ids(state, space, flt))
    page = ids[offset : None if limit is None else offset + limit]
    return load_explanations(state.db, page), len(ids)


def load_explanations(db: Database, ids: list[str]) -> list[Explanation]:
    """The explanations ``ids``, in that order."""
    found: dict[str, Explanation] = {}
    with db.session() as s:
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            query = select(Explanation).where(Explanation.id.in_(chunk))
            found.update({e.id: e for e in s.scalars(query)})
    return [found[i] for i in ids if i in found]


def explanation_context(db: Database, rows: list[Explanation]) -> dict[str, tuple[str, str | None]]:
    """For each row's transaction: its ``scoring_id`` and its subscription's deployment."""
    tx_ids = {e.transaction_id for e in rows}
    if not tx_ids:
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    with db.session() as s:
        for chunk in _chunks(sorted(tx_ids)):
            for tx_id, sid, dep_id in s.execute(
                select(Transaction.id, Transaction.scoring_id, Subscription.deployment_id)
                .join(Subscription, Subscription.id == Transaction.subscription_id)
                .where(Transaction.id.in_(chunk))
            ):
                out[tx_id] = (sid, dep_id)
    return out


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _BATCH):
        yield values[start : start + _BATCH]


def mark_exported(db: Database, ids: list[str], when: datetime | None = None) -> None:
    """Set ``exported_at`` on those of ``ids`` not exported before."""
    moment = when or utcnow()
    with db.session() as s:
        for chunk in _chunks(ids):
            s.execute(
                update(Explanation)
                .where(Explanation.id.in_(chunk), Explanation.exported_at.is_(None))
                .values(exported_at=moment)
                .execution_options(synchronize_session=False)
            )


def explanation_views(
    state: ServiceState, rows: list[Explanation], base: str
) -> list[ExplanationRead]:
    """Explanations as JSON (``base``: the service's URL, for the pane links)."""
    ctx = explanation_context(state.db, rows)
    return [
        explanation_view(
            e,
            ctx.get(e.transaction_id, ("", None))[0],
            base,
            deployment_id=ctx.get(e.transaction_id, ("", None))[1],
        )
        for e in rows
    ]


def export_lines(state: ServiceState, ids: list[str], base: str) -> Iterator[bytes]:
    """The explanations ``ids`` as JSON Lines (one view with its RESULT per line), read from
    the database a hundred at a time."""
    for start in range(0, len(ids), 100):
        rows = load_explanations(state.db, ids[start : start + 100])
        for view in explanation_views(state, rows, base):
            yield view.model_dump_json().encode() + b"\n"


def latest_explanations(state: ServiceState, ids: list[str]) -> dict[str, Explanation]:
    """The newest explanation of each transaction in ``ids`` (internal ids)."""
    if not ids:
        return {}
    with state.db.session() as s:
        rows = s.scalars(
            select(Explanation)
            .where(Explanation.transaction_id.in_(ids))
            .order_by(Explanation.created_at)
        )
        return {e.transaction_id: e for e in rows}


def settled_verdict(items: list[dict[str, Any]]) -> bool | None:
    """Whether every explained class's top regions settled; ``None`` when the method is
    deterministic (``settled`` null: no sampling uncertainty to settle), which neither
    ``settled=true`` nor ``settled=false`` selects."""
    if not items or any(i.get("settled") is None for i in items):
        return None
    return all(bool(i["settled"]) for i in items)
