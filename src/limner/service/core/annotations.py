"""Reviewers' annotations of explanations: a note and a verdict, by a named key."""

from __future__ import annotations

from sqlalchemy import func, select

from limner.errors import InvalidInputError
from limner.report import VERDICTS
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.tables import Annotation, Explanation, utcnow

#: Longest note, in characters.
MAX_NOTE = 10_000

#: Most annotations one explanation may have (each one is a row and a line of its report).
MAX_PER_EXPLANATION = 500


def annotate(
    state: ServiceState, space: SpaceRef, exp: Explanation, *, note: str, verdict: str | None
) -> Annotation:
    """Add an annotation to ``exp`` by ``space``'s key (422 for an empty one, an unknown
    verdict, or too many on one explanation)."""
    note = note.strip()
    if verdict is not None and verdict not in VERDICTS:
        raise InvalidInputError(f"verdict is one of {', '.join(VERDICTS)}, not {verdict!r}")
    if not note and verdict is None:
        raise InvalidInputError("an annotation needs a note, a verdict, or both")
    if len(note) > MAX_NOTE:
        raise InvalidInputError(f"a note has at most {MAX_NOTE} characters")
    with state.db.session() as s:
        held = s.scalar(
            select(func.count()).select_from(Annotation).where(Annotation.explanation_id == exp.id)
        )
    if int(held or 0) >= MAX_PER_EXPLANATION:
        raise InvalidInputError(
            f"explanation {exp.id!r} has {MAX_PER_EXPLANATION} annotations, the most it may have"
        )
    row = Annotation(
        id=new_id(),
        space_id=space.id,
        explanation_id=exp.id,
        key_id=space.key_id,
        key_name=space.key_name,
        role=space.role,
        verdict=verdict,
        note=note,
        created_at=utcnow(),
    )
    with state.db.session() as s:
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


def annotations_of(state: ServiceState, explanation_id: str) -> list[Annotation]:
    """The annotations of an explanation, oldest first."""
    with state.db.session() as s:
        return list(
            s.scalars(
                select(Annotation)
                .where(Annotation.explanation_id == explanation_id)
                .order_by(Annotation.created_at, Annotation.id)
            )
        )


def latest_verdict(annotations: list[Annotation]) -> str | None:
    """The verdict of the newest annotation that has one."""
    return next((a.verdict for a in reversed(annotations) if a.verdict), None)
