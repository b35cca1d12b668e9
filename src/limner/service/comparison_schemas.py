"""Request and response bodies of ``/v1/comparisons`` (beside :mod:`limner.service.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from limner.service.schemas import Method, SettingOverrides, Status, Timestamp

#: Fewest and most explanations one comparison holds (deployments × methods).
MIN_COMPARED = 2
MAX_COMPARED = 6


class ComparisonCreate(SettingOverrides):
    """``POST /v1/comparisons``: explain one transaction with several deployments of the same
    labels and/or several methods, all on the same regions."""

    scoring_id: str = Field(min_length=1, max_length=64)
    #: Deployments (ids or names) whose models explain; default: the transaction's own.
    deployment_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_COMPARED)
    #: Methods; default: the subscription's.
    methods: list[Method] | None = Field(default=None, min_length=1, max_length=MAX_COMPARED)


class ComparedExplanation(BaseModel):
    """One explanation of a comparison: which deployment's model and which method made it."""

    id: str
    explanation_id: str
    #: The deployment whose model explains (null: an external subscription's own model).
    deployment_id: str | None
    deployment: str
    method: str
    status: Status
    progress: float
    error: str | None


class ComparisonQueued(BaseModel):
    """Answer to ``POST /v1/comparisons`` (202)."""

    id: str
    comparison_id: str
    scoring_id: str
    status: Status
    explanations: list[ComparedExplanation]


class ComparedRegion(BaseModel):
    """One region and its weight in every explanation (in the order of ``explanations``)."""

    id: int
    area: int
    #: Percent of the image the region covers.
    share: float
    weights: list[float]


class PairAgreementRead(BaseModel):
    """How two explanations agree on one class."""

    a: str
    b: str
    spearman: float | None
    top3_overlap: int
    top3_shared: list[int]


class DisagreementRead(BaseModel):
    """A region the explanations disagree on, and the same in words.

    ``top3``: in the top 3 of ``inside``, not of ``outside``; ``sign``: raises the class in
    ``inside``, lowers it in ``outside``.
    """

    region: int
    kind: Literal["top3", "sign"]
    inside: list[str]
    outside: list[str]
    text: str


class ComparedClass(BaseModel):
    """One explained class: the region table, the pairwise agreement, the disagreements."""

    label: str
    class_index: int
    regions: list[ComparedRegion]
    agreement: list[PairAgreementRead]
    disagreements: list[DisagreementRead]


class ComparisonRead(BaseModel):
    """A comparison; ``classes`` once every explanation has ended (two or more finished)."""

    id: str
    comparison_id: str
    scoring_id: str
    status: Status
    progress: float
    segmentation: dict[str, str | int | None]
    explanations: list[ComparedExplanation]
    classes: list[ComparedClass] | None
    created_at: Timestamp
