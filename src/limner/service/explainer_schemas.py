"""Request and response bodies of ``/v1/deployments/{id}/explainers`` and ``/v1/explainers``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from limner.service.schemas import Baseline, OptionalTimestamp, Status, Strict, Timestamp

#: Most images one explainer learns from.
MAX_TRAINING_IMAGES = 5000


class ExplainerCreate(Strict):
    """``POST /v1/deployments/{id}/explainers``: train the deployment's amortized explainer.

    As JSON, from the deployment's newest logged transactions (``source: transactions``); as
    multipart, from the uploaded ``images`` files (these fields as form fields)."""

    source: Literal["transactions", "upload"] = "transactions"
    #: Most images to learn from (the newest transactions; an upload's first).
    limit: int = Field(default=1000, ge=10, le=MAX_TRAINING_IMAGES)
    baseline: Baseline = "blur"
    #: Complementary pairs of coalitions the model scores per image.
    pairs: int = Field(default=32, ge=2, le=128)
    epochs: int = Field(default=60, ge=1, le=500)
    #: Held-out images the explainer is calibrated on, against KernelSHAP with
    #: ``reference_samples`` coalitions each (at most ``LIMNER_MAX_SAMPLES``).
    calibration_images: int = Field(default=50, ge=2, le=200)
    reference_samples: int = Field(default=1024, ge=64, le=20000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class ExplainerRead(BaseModel):
    """A training of a deployment's explainer and, once finished, what it learned."""

    id: str
    deployment_id: str
    version: int
    status: Status
    source: str
    #: ``games``, ``training`` or ``calibrating`` while it runs.
    stage: str
    progress: float
    error: str | None
    settings: dict[str, Any]
    #: The SHA-256 of the deployment's artifact it is (or will be) trained for.
    model_sha256: str | None
    #: Whether method ``amortized`` uses it now (the newest finished explainer of the
    #: deployment's current artifact).
    current: bool = False
    #: Once finished: images learned from and held out, the held-out error (median relative
    #: squared error of the predicted class against near-exact values), seconds it took.
    training_images: int | None = None
    heldout_images: int | None = None
    heldout_error: float | None = None
    seconds: float | None = None
    requested_by: str | None = None
    created_at: Timestamp
    started_at: OptionalTimestamp
    finished_at: OptionalTimestamp


class ExplainerList(BaseModel):
    """A deployment's explainers, newest version first."""

    explainers: list[ExplainerRead]
