"""``/v1/audit``: the caller's space's audit trail, and a check of its hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from limner.service.deps import SpaceDep, StateDep
from limner.service.query import KnownQuery
from limner.service.schemas import as_utc
from limner.store import audit as trail

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditRecordRead(BaseModel):
    """One record of the trail (see docs/api.md, "Audit trail", for each field)."""

    space_id: str
    n: int
    at: str
    key_id: str | None
    key_name: str
    role: str
    client: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    """A page of records, newest first, and how many match the filters in all."""

    records: list[AuditRecordRead]
    total: int
    limit: int
    offset: int


class AuditVerdict(BaseModel):
    """What checking the space's chain found."""

    ok: bool
    checked: int = Field(description="records checked, oldest first, before the first broken one")
    broken: int | None = Field(description="number (n) of the first broken record, if any")
    reason: str


@router.get("", response_model=AuditList, dependencies=[KnownQuery])
async def list_records(
    space: SpaceDep,
    state: StateDep,
    action: str | None = Query(None, max_length=64, description="e.g. deployment.create"),
    key: str | None = Query(None, max_length=32, description="id of the key that acted"),
    target: str | None = Query(None, max_length=200, description="id the request acted on"),
    since: datetime | None = Query(None, description="at or after (ISO 8601; UTC if no offset)"),
    until: datetime | None = Query(None, description="before (ISO 8601; UTC if no offset)"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> AuditList:
    """The space's audit records, newest first (any role may read them)."""
    filters = trail.AuditQuery(
        action=action, key_id=key, target=target, since=as_utc(since), until=as_utc(until)
    )
    rows, total = await run_in_threadpool(
        trail.query, state.db, space.id, filters, limit=limit, offset=offset
    )
    return AuditList(
        records=[AuditRecordRead(**trail.record_dict(r)) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/verify", response_model=AuditVerdict, dependencies=[KnownQuery])
async def verify_chain(space: SpaceDep, state: StateDep) -> AuditVerdict:
    """Check the space's whole chain: numbering, links and every record's hash."""
    verdict = await run_in_threadpool(trail.verify, state.db, space.id)
    return AuditVerdict(
        ok=verdict.ok, checked=verdict.checked, broken=verdict.broken_n, reason=verdict.reason
    )
