"""Bodies of the reviewer's routes: annotations and reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from limner.service.schemas import Strict, Timestamp

Verdict = Literal["accepted", "needs-follow-up", "rejected"]


class AnnotationCreate(Strict):
    """``POST /v1/explanations/{id}/annotations``: a note, a verdict, or both."""

    note: str = Field("", max_length=10_000)
    verdict: Verdict | None = None


class AnnotationRead(BaseModel):
    """An annotation, with who made it and when."""

    id: str
    explanation_id: str
    note: str
    verdict: Verdict | None
    key_id: str | None
    key_name: str
    role: str
    created_at: Timestamp


class AnnotationList(BaseModel):
    """The annotations of an explanation, oldest first."""

    annotations: list[AnnotationRead]


class ReportCreate(Strict):
    """``POST /v1/reports``: one report of several explanations."""

    explanation_ids: list[str] = Field(min_length=1, max_length=50)
    format: Literal["html", "pdf"] = "pdf"
    title: str = Field("limner explanation report", max_length=200)
