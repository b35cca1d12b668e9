"""Request and response bodies of the REST API (apart from the SQLAlchemy tables)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Method = Literal["lime", "kernelshap", "occlusion", "rise", "integrated-gradients", "gradcam"]
Segmentation = Literal["slic", "quickshift", "felzenszwalb", "grid"]
Baseline = Literal["mean", "blur", "gray", "black"]
Status = Literal["queued", "running", "finished", "failed"]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored time is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Timestamp = Annotated[datetime, AfterValidator(_utc)]
OptionalTimestamp = Annotated[datetime | None, AfterValidator(_utc)]

_NAME = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def _check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 20:
        raise ValueError("at most 20 headers")
    for name, content in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name[:100]!r} is not a valid header name")
        if len(content) > 8192 or any(c in content for c in "\r\n\0"):
            raise ValueError(f"the value of header {name!r} is too long or holds a line break")
    return value


#: HTTP headers sent to a remote model or an external scoring URL; stored, never shown back.
Headers = Annotated[dict[str, str] | None, AfterValidator(_check_headers)]


class Strict(BaseModel):
    """A request body that refuses unknown fields (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid")


# --- deployments -----------------------------------------------------------------------------


class DeploymentCreate(Strict):
    """``POST /v1/deployments`` as JSON: a model spec the server can load."""

    name: str = _NAME
    model: str = Field(min_length=1, max_length=2000)
    labels: list[str] | None = Field(default=None, min_length=1)
    input: dict[str, Any] | None = None
    output: Literal["probabilities", "logits"] | None = None
    problem_type: Literal["binary", "multiclass"] | None = None
    headers: Headers = None

    def hints(self) -> dict[str, Any] | None:
        """The metadata fields given (what the model or its server does not tell)."""
        fields = {
            "labels": self.labels,
            "input": self.input,
            "output": self.output,
            "problem_type": self.problem_type,
        }
        given = {k: v for k, v in fields.items() if v is not None}
        return given or None


class DeploymentRead(BaseModel):
    """A deployment."""

    id: str
    name: str
    model: str
    problem_type: str
    num_classes: int
    input_size: list[int]
    inference_url: str
    created_at: Timestamp


class DeploymentList(BaseModel):
    """``GET /v1/deployments``."""

    deployments: list[DeploymentRead]


# --- subscriptions ---------------------------------------------------------------------------


class SubscriptionCreate(Strict):
    """A deployment served here (``deployment_id``) or an external model (the other fields)."""

    deployment_id: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    scoring_url: str | None = Field(default=None, pattern=r"^https?://")
    labels: list[str] | None = Field(default=None, min_length=1)
    input: dict[str, Any] | None = None
    output: Literal["probabilities", "logits"] | None = None
    problem_type: Literal["binary", "multiclass"] | None = None
    headers: Headers = None


class ExplainabilitySettings(Strict):
    """``PUT /v1/subscriptions/{id}/explainability``: how transactions are explained."""

    enabled: bool = True
    method: Method = "kernelshap"
    samples: int | None = Field(default=None, ge=8, le=20000)
    max_samples: int | None = Field(default=None, ge=8, le=20000)
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)
    settle_top: int | None = Field(default=None, ge=1, le=50)
    tie_tolerance: float | None = Field(default=None, ge=0.0, lt=1.0)
    segmentation: Segmentation = "slic"
    segments: int | None = Field(default=None, ge=2, le=1000)
    baseline: Baseline = "blur"
    #: Integration steps of ``integrated-gradients`` (default: until complete within 1%).
    steps: int | None = Field(default=None, ge=2, le=1024)
    #: The layer ``gradcam`` reads (default: the model's last spatial feature map).
    layer: str | None = Field(default=None, min_length=1, max_length=200)


class SubscriptionRead(BaseModel):
    """A subscription."""

    id: str
    name: str
    deployment_id: str | None
    scoring_url: str | None
    problem_type: str
    num_classes: int
    explainability: dict[str, Any]
    created_at: Timestamp


class SubscriptionList(BaseModel):
    """``GET /v1/subscriptions``."""

    subscriptions: list[SubscriptionRead]


class PayloadRecord(Strict):
    """One scoring of an external model."""

    scoring_id: str | None = Field(default=None, min_length=1, max_length=64)
    image: str = Field(min_length=1)
    probabilities: list[float] = Field(min_length=1)
    timestamp: datetime | None = None


class PayloadRecords(Strict):
    """``POST /v1/subscriptions/{id}/payload-records``."""

    records: list[PayloadRecord] = Field(min_length=1, max_length=1000)


class RecordAck(BaseModel):
    """The stored transaction of a payload record (``created`` false when it existed already)."""

    scoring_id: str
    created: bool


class RecordAcks(BaseModel):
    """Answer to ``POST /v1/subscriptions/{id}/payload-records``."""

    records: list[RecordAck]


# --- transactions and predictions ------------------------------------------------------------


class ClassProbability(BaseModel):
    """A class and its probability."""

    label: str
    class_index: int
    probability: float


class TransactionRead(BaseModel):
    """A logged scoring."""

    id: str
    scoring_id: str
    subscription_id: str
    label: str
    class_index: int
    probability: float
    predictions: list[ClassProbability]
    width: int
    height: int
    image_url: str
    created_at: Timestamp


class TransactionList(BaseModel):
    """``GET /v1/subscriptions/{id}/transactions``, newest first."""

    transactions: list[TransactionRead]
    total: int
    limit: int
    offset: int


class Prediction(BaseModel):
    """One scored image (``scoring_id`` is null when the deployment has no subscription)."""

    scoring_id: str | None
    label: str
    class_index: int
    probability: float
    probabilities: dict[str, float]


class Predictions(BaseModel):
    """Answer to ``POST /v1/deployments/{id}/predictions``."""

    predictions: list[Prediction]


# --- explanations ----------------------------------------------------------------------------


class ExplanationCreate(Strict):
    """``POST /v1/explanations``: explain a transaction, optionally overriding the settings."""

    scoring_id: str = Field(min_length=1, max_length=64)
    classes: list[str | int] | None = Field(default=None, min_length=1, max_length=20)
    top_k: int | None = Field(default=None, ge=1, le=20)
    seed: int | None = Field(default=None, ge=0)
    method: Method | None = None
    samples: int | None = Field(default=None, ge=8, le=20000)
    max_samples: int | None = Field(default=None, ge=8, le=20000)
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)
    settle_top: int | None = Field(default=None, ge=1, le=50)
    tie_tolerance: float | None = Field(default=None, ge=0.0, lt=1.0)
    segmentation: Segmentation | None = None
    segments: int | None = Field(default=None, ge=2, le=1000)
    baseline: Baseline | None = None
    steps: int | None = Field(default=None, ge=2, le=1024)
    layer: str | None = Field(default=None, min_length=1, max_length=200)


class ExplanationQueued(BaseModel):
    """Answer to ``POST /v1/explanations`` (202)."""

    id: str
    explanation_id: str
    scoring_id: str
    status: Status


class ExplanationRead(BaseModel):
    """An explanation job and, once finished, its RESULT."""

    id: str
    explanation_id: str
    scoring_id: str
    status: Status
    progress: float
    error: str | None
    settings: dict[str, Any]
    result: dict[str, Any] | None
    created_at: Timestamp
    started_at: OptionalTimestamp
    finished_at: OptionalTimestamp


class ExplanationList(BaseModel):
    """``GET /v1/explanations``."""

    explanations: list[ExplanationRead]
