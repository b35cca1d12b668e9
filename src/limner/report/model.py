"""What a report shows about an explanation, as plain data: no database, no service.

The caller (the service, a script) fills these from wherever the explanation lives; the renderer
reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A reviewer's verdicts on an explanation (``None`` on an annotation: a note only).
VERDICTS = ("accepted", "needs-follow-up", "rejected")


@dataclass(frozen=True)
class ReportAnnotation:
    """A reviewer's verdict and note on an explanation."""

    key_name: str
    role: str
    verdict: str | None
    note: str
    created_at: datetime

    def __post_init__(self) -> None:
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)} or None")


@dataclass
class ReportExplanation:
    """One explanation as a report shows it: the RESULT, where it came from, who asked for it,
    what reviewers said, and its images.

    ``result`` is the RESULT as stored (see docs/result.md), or ``None`` while the explanation
    has none (queued, running, failed). ``image`` is the transaction's image and ``panes`` the
    panes of each explained class (``{class_index: {"positive": png, "negative": png, ...}}``),
    all PNG bytes.
    """

    explanation_id: str
    status: str
    method: str
    result: dict[str, Any] | None
    #: the transaction: its scoring id and the model's label and probability for it
    scoring_id: str
    label: str
    probability: float
    deployment: str
    artifact_sha256: str | None
    image: bytes
    panes: dict[int, dict[str, bytes]] = field(default_factory=dict)
    #: who asked for the explanation (the key's name and role) and when
    requested_by: str | None = None
    requested_role: str | None = None
    requested_at: datetime | None = None
    #: the image's file name, the caller's case id, and the true label once known
    source: str | None = None
    external_id: str | None = None
    feedback: str | None = None
    annotations: list[ReportAnnotation] = field(default_factory=list)
