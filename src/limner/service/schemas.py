"""Request and response bodies of the REST API (apart from the SQLAlchemy tables)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Method = Literal[
    "lime",
    "kernelshap",
    "occlusion",
    "rise",
    "drise",
    "integrated-gradients",
    "gradcam",
    "xrai",
    "amortized",
]
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
    problem_type: Literal["binary", "multiclass", "detection"] | None = None
    #: An object detector's ``detection`` block (its output names and box format).
    detection: dict[str, Any] | None = None
    headers: Headers = None

    def hints(self) -> dict[str, Any] | None:
        """The metadata fields given (what the model or its server does not tell)."""
        fields = {
            "labels": self.labels,
            "input": self.input,
            "output": self.output,
            "problem_type": self.problem_type,
            "detection": self.detection,
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
    #: The SHA-256 of the model's artifact (null for built-in models and URLs).
    artifact_sha256: str | None = None
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


class ViewBody(Strict):
    """A Vertex-style view of an explanation (docs/vertex.md); fields left out are the
    method's default view. Names are read case-insensitively."""

    type: str | None = Field(default=None, description="PIXELS or OUTLINES")
    polarity: str | None = Field(default=None, description="positive, negative or both")
    clip_percent_upperbound: float | None = Field(default=None, ge=0, le=100)
    clip_percent_lowerbound: float | None = Field(default=None, ge=0, le=100)
    color_map: str | None = Field(
        default=None, description="PINK_GREEN, VIRIDIS, RED, GREEN, RED_GREEN or PiYG"
    )
    overlay_type: str | None = Field(
        default=None, description="NONE, ORIGINAL, GRAYSCALE or MASK_BLACK"
    )

    @model_validator(mode="after")
    def _valid(self) -> ViewBody:
        from limner.imaging.views import ViewSettings

        given = self.model_dump(exclude_none=True)
        checked = ViewSettings.from_dict(given).to_dict()  # InvalidInputError is a ValueError
        for name in given:
            object.__setattr__(self, name, checked[name])
        return self


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
    #: The view the dashboard shows of each explanation (default: the method's Vertex default).
    view: ViewBody | None = None
    #: Explain every scored transaction in the background (with the deployment's amortized
    #: explainer once it has one, else with ``method``).
    auto_explain: bool = False
    #: Train the deployment's amortized explainer from its logged transactions once this many
    #: are logged (null: only on request).
    explainer_after: int | None = Field(default=None, ge=10, le=5000)
    #: Compute each explanation's deletion and insertion curves (false: faithfulness fields
    #: null, a cheaper explanation; a request may ask for them again).
    curves: bool = True


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
    #: The caller's case or request id (unique in the subscription), the image's file name,
    #: and the true label when it is known already.
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    source: str | None = Field(default=None, min_length=1, max_length=500)
    feedback: str | None = Field(default=None, min_length=1, max_length=200)


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


class DetectedBox(BaseModel):
    """One box an object detector found: ``box`` is ``[x0, y0, x1, y1]`` in the photo's
    pixels; ``index`` is its place in the detector's order (what ``box`` of an explanation
    request names)."""

    index: int
    box: list[float]
    label: str
    class_index: int
    score: float


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
    #: The caller's case or request id, the image's file name, the true label (feedback).
    external_id: str | None = None
    source: str | None = None
    feedback: str | None = None
    #: Whether ``label`` differs from ``feedback`` (null while there is no feedback).
    misclassified: bool | None = None
    #: The subscription's deployment (null for an external model).
    deployment_id: str | None = None
    #: Whether it has an explanation queued, running or finished (a failed one does not count).
    explained: bool | None = None
    #: An object detector's boxes, best first (null for a classifier's transaction).
    detections: list[DetectedBox] | None = None


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
    #: An object detector's boxes, best first; ``label``, ``class_index`` and ``probability``
    #: are then the best box's (``""``, -1 and 0 when it found nothing) and ``probabilities``
    #: each class's best box score (null for a classifier).
    detections: list[DetectedBox] | None = None


class Predictions(BaseModel):
    """Answer to ``POST /v1/deployments/{id}/predictions``."""

    predictions: list[Prediction]


# --- explanations ----------------------------------------------------------------------------


class SettingOverrides(Strict):
    """Settings of one explanation request that replace the subscription's (the method apart:
    a comparison names several)."""

    classes: list[str | int] | None = Field(default=None, min_length=1, max_length=20)
    top_k: int | None = Field(default=None, ge=1, le=20)
    seed: int | None = Field(default=None, ge=0)
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
    #: An object detector's box to explain: its number in the transaction's detections, or the
    #: best-scoring box of a label (default: the best-scoring box).
    box: int | None = Field(default=None, ge=0, le=999)
    box_label: str | None = Field(default=None, min_length=1, max_length=200)


class ExplanationOverrides(SettingOverrides):
    """Settings of one explanation request that replace the subscription's, the method too."""

    method: Method | None = None
    #: The deletion and insertion curves (false: the RESULT's faithfulness fields are null and
    #: the explanation costs only its method's evaluations; a classifier's region methods).
    curves: bool | None = None


class ExplanationCreate(ExplanationOverrides):
    """``POST /v1/explanations``: explain a transaction, optionally overriding the settings."""

    scoring_id: str = Field(min_length=1, max_length=64)


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
    #: The deployment whose model explains (null: an external model's transaction).
    deployment_id: str | None = None
    #: The name and role of the key that asked.
    requested_by: str | None = None
    requested_role: str | None = None
    #: When a download or report first carried it.
    exported_at: OptionalTimestamp = None


class ExplanationList(BaseModel):
    """``GET /v1/explanations``, newest first."""

    explanations: list[ExplanationRead]
    total: int | None = None
    limit: int | None = None
    offset: int | None = None


# --- finding transactions and explanations ---------------------------------------------------

#: Most transactions one ``POST /v1/explanations/batch`` considers.
MAX_BATCH = 500


def as_utc(value: datetime | None) -> datetime | None:
    """A time in UTC (a time without an offset is taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class _TimeRange(Strict):
    """``since`` (inclusive) and ``until`` (exclusive), ISO 8601, UTC unless an offset is given."""

    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _check_range(self) -> _TimeRange:
        self.since, self.until = as_utc(self.since), as_utc(self.until)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class TransactionFilter(_TimeRange):
    """Which transactions: every field given must hold (``GET /v1/transactions``)."""

    #: The predicted label, and the true one (feedback).
    label: str | None = Field(default=None, min_length=1, max_length=200)
    true_label: str | None = Field(default=None, min_length=1, max_length=200)
    #: With feedback that differs from (true) or equals (false) the predicted label.
    misclassified: bool | None = None
    deployment_id: str | None = Field(default=None, min_length=1, max_length=64)
    subscription_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: With an explanation queued, running or finished (true), or none of those (false).
    explained: bool | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=200)


class ExplanationFilter(_TimeRange):
    """Which explanations: every field given must hold (``GET /v1/explanations``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    scoring_id: str | None = Field(default=None, min_length=1, max_length=64)
    status: Status | None = None
    method: Method | None = None
    #: An explained class of the RESULT: a label, or a class index.
    class_: str | None = Field(default=None, alias="class", min_length=1, max_length=200)
    deployment_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: The name or the id of the key that asked.
    requested_by: str | None = Field(default=None, min_length=1, max_length=200)
    #: Every explained class settled (true), or at least one not (false).
    settled: bool | None = None
    #: At least one explained class with warnings (true), or none (false).
    warnings: bool | None = None
    #: At least one explained class whose fit R² is below this value.
    max_r2: float | None = Field(default=None, allow_inf_nan=False)

    @property
    def on_result(self) -> bool:
        """Whether a filter reads the RESULT (only finished explanations can match)."""
        return any(v is not None for v in (self.class_, self.settled, self.warnings, self.max_r2))


class FeedbackSet(Strict):
    """``PUT /v1/transactions/{scoring_id}/feedback``: the true label, or null to clear it."""

    label: str | None = Field(min_length=1, max_length=200)


class ExplanationBatch(Strict):
    """``POST /v1/explanations/batch``: explain the transactions a filter selects."""

    filter: TransactionFilter = Field(default_factory=TransactionFilter)
    settings: ExplanationOverrides | None = None
    #: The newest ``limit`` selected transactions are considered (at most 500).
    limit: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)


class NotQueued(BaseModel):
    """Why some selected transactions were not queued, and how many."""

    code: str
    message: str
    count: int


class ExplanationBatchQueued(BaseModel):
    """Answer to ``POST /v1/explanations/batch``."""

    #: Transactions the filter selects (the newest ``limit`` of them are considered).
    matched: int
    queued: list[ExplanationQueued]
    not_queued: int
    reasons: list[NotQueued]
