"""Reports of explanations (HTML and PDF) from what the service stores, for reviewers.

The renderer (:mod:`limner.report`) knows nothing of the database: this module gathers, for each
explanation of the caller's space, its RESULT, transaction, deployment (name and artifact
SHA-256), who asked for it, its annotations and its images, and marks the explanations exported
(exported explanations outlive a deletion of their deployment).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from limner.errors import NotFoundError, ServiceBusyError
from limner.explain import DEFAULT_METHOD
from limner.report import ReportAnnotation, ReportExplanation, render_html, render_pdf
from limner.service.core.annotations import annotations_of
from limner.service.core.find import mark_exported
from limner.service.state import ServiceState
from limner.store import SpaceRef
from limner.store.lookup import find_in_space
from limner.store.tables import Deployment, Explanation, Subscription, Transaction

#: Reports rendered at once by this process (a PDF takes a core for about a second); more wait
#: up to :data:`RENDER_WAIT` seconds, then get 503.
MAX_RENDERS = 2
RENDER_WAIT = 30.0
_renders = threading.BoundedSemaphore(MAX_RENDERS)


@dataclass(frozen=True)
class Report:
    """A rendered report: its bytes, media type and file name."""

    content: bytes
    media_type: str
    filename: str


@contextmanager
def _render_slot() -> Iterator[None]:
    if not _renders.acquire(timeout=RENDER_WAIT):
        raise ServiceBusyError("reports are being rendered; try again shortly", retry_after=5)
    try:
        yield
    finally:
        _renders.release()


def report(
    state: ServiceState,
    space: SpaceRef,
    explanation_ids: list[str],
    *,
    fmt: str,
    title: str = "limner explanation report",
) -> Report:
    """The report of the space's explanations ``explanation_ids`` (404 for one that is not
    the space's), as ``fmt`` ``html`` or ``pdf``; marks them exported."""
    rows = []
    for explanation_id in dict.fromkeys(explanation_ids):
        exp = find_in_space(state.db, Explanation, explanation_id, space.id)
        if exp is None:
            raise NotFoundError(f"no explanation {explanation_id!r}")
        rows.append(exp)
    items = [report_item(state, exp) for exp in rows]
    with _render_slot():
        html = render_html(items, title=title, generated_at=datetime.now(UTC))
        content = render_pdf(html) if fmt == "pdf" else html.encode("utf-8")
    mark_exported(state.db, [exp.id for exp in rows])
    stem = f"limner-explanation-{rows[0].id[:12]}" if len(rows) == 1 else "limner-report"
    media = "application/pdf" if fmt == "pdf" else "text/html; charset=utf-8"
    return Report(content, media, f"{stem}.{fmt}")


def report_item(state: ServiceState, exp: Explanation) -> ReportExplanation:
    """What the report shows of one explanation, read from the database and the blob store."""
    with state.db.session() as s:
        tx = s.scalar(select(Transaction).where(Transaction.id == exp.transaction_id))
        if tx is None:
            raise NotFoundError(f"no explanation {exp.id!r}")
        sub = s.get(Subscription, tx.subscription_id)
        dep_id = exp.deployment_id or (sub.deployment_id if sub is not None else None)
        dep = s.get(Deployment, dep_id) if dep_id else None
    if dep is not None:
        model_name, digest = dep.name, dep.artifact_sha256
    else:
        model_name = f"external model {sub.name}" if sub is not None else "(removed)"
        digest = None
    panes: dict[int, dict[str, bytes]] = {}
    for key, blob in (exp.panes or {}).items():
        class_index, _, kind = key.partition("/")
        if class_index.isdigit() and kind:
            panes.setdefault(int(class_index), {})[kind] = state.blobs.get(blob)
    return ReportExplanation(
        explanation_id=exp.id,
        status=exp.status,
        method=str((exp.result or {}).get("method") or exp.settings.get("method", DEFAULT_METHOD)),
        result=exp.result,
        scoring_id=tx.scoring_id,
        label=tx.label,
        probability=float(tx.probability),
        deployment=model_name,
        artifact_sha256=digest,
        image=state.blobs.get(tx.image_blob),
        panes=panes,
        requested_by=exp.requested_by,
        requested_role=exp.requested_role,
        requested_at=exp.created_at,
        source=tx.source,
        external_id=tx.external_id,
        feedback=tx.feedback,
        annotations=[
            ReportAnnotation(a.key_name, a.role, a.verdict, a.note, a.created_at)
            for a in annotations_of(state, exp.id)
        ],
    )
