"""Caps on what one explanation and one space may ask of the shared job runner.

Samples and segments are what an explanation's cost grows with; jobs in flight per space keep
one space from filling the queue ahead of every other. The limits come from the settings
(``LIMNER_MAX_SAMPLES``, ``LIMNER_MAX_SEGMENTS``, ``LIMNER_MAX_JOBS_PER_SPACE``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from limner.errors import InvalidInputError, RateLimitError
from limner.explain.methods import EXPLAINERS
from limner.jobs import QUEUED, RUNNING
from limner.settings import Settings
from limner.store import Database
from limner.store.tables import ExplainerJob, Explanation

#: Seconds a client told "too many jobs" is asked to wait before it tries again.
JOBS_RETRY_AFTER = 10


def check_explanation_settings(settings: dict[str, Any], limits: Settings) -> dict[str, Any]:
    """``settings`` with samples and segments within the limits (422 naming the limit).

    Both budgets count against ``LIMNER_MAX_SAMPLES``: the fixed one (``samples``) and the
    adaptive one (``max_samples``). A method whose own default would sample more than the limit
    is held to the limit.
    """
    samples = settings.get("samples")
    for name in ("samples", "max_samples"):
        value = settings.get(name)
        if value is not None and value > limits.max_samples:
            raise InvalidInputError(
                f"{name} {value} is over the limit of {limits.max_samples} (LIMNER_MAX_SAMPLES)"
            )
    segments = settings.get("segments")
    if segments is not None and segments > limits.max_segments:
        raise InvalidInputError(
            f"segments {segments} is over the limit of {limits.max_segments} (LIMNER_MAX_SEGMENTS)"
        )
    method = EXPLAINERS.get(str(settings.get("method", "")))
    if samples is None and method is not None and method.default_samples > limits.max_samples:
        return {**settings, "samples": limits.max_samples}
    return settings


def jobs_in_flight(db: Database, space_id: str) -> int:
    """How many jobs of the space are queued or running: explanations and explainer
    trainings."""
    n = 0
    with db.session() as s:
        for table in (Explanation, ExplainerJob):
            n += (
                s.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.space_id == space_id, table.status.in_((QUEUED, RUNNING)))
                )
                or 0
            )
    return int(n)


def check_jobs_in_flight(db: Database, space_id: str, limits: Settings) -> None:
    """Refuse (429 with ``Retry-After``) a job of a space with too many queued or running."""
    n = jobs_in_flight(db, space_id)
    if n >= limits.max_jobs_per_space:
        raise RateLimitError(
            f"this space has {n} jobs (explanations and explainer trainings) queued or running, "
            "the limit is "
            f"{limits.max_jobs_per_space} (LIMNER_MAX_JOBS_PER_SPACE); try again when some "
            "have finished",
            retry_after=JOBS_RETRY_AFTER,
        )
