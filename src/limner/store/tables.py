"""SQLAlchemy tables. Schemas for the API live apart, in :mod:`limner.service.schemas`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Base of every limner table."""


class Space(Base):
    """A tenant: keys, deployments and everything below them belong to one space."""

    __tablename__ = "spaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Bytes of the space's transaction images (the sum of ``transactions.image_bytes``, kept
    #: with every insert and delete of transactions): part of its storage quota.
    image_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """An API key, stored as the SHA-256 of its token; the token itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    #: ``viewer`` (reads, explains, annotates and exports), ``tenant`` (the default; untrusted,
    #: may also deploy and change its space) or ``admin`` (the operator's own key).
    role: Mapped[str] = mapped_column(String(16), default="tenant", server_default="tenant")
    #: Who holds the key ("Dana, model risk"): shown in ``keys list``, the dashboard header and
    #: every record the key makes.
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Deployment(Base):
    """A model served here under a name unique in its space."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_space_name", "space_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(Text)
    model_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: HTTP headers sent to a remote model (an ``Authorization`` key); never shown back.
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    #: Bytes an uploaded model takes on disk (counted against the space's quota).
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: SHA-256 of the model artifact (the uploaded file, or the file a server path names).
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: When a deletion kept the deployment's reviewed history: it no longer scores or loads.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Subscription(Base):
    """A monitored model: a deployment served here, or an external scoring endpoint."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    deployment_id: Mapped[str | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), unique=True, nullable=True
    )
    scoring_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    explainability: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: HTTP headers sent to the external scoring URL; never shown back.
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Transaction(Base):
    """One scored image of a subscription.

    ``scoring_id`` is the id clients see, unique within its space (two spaces may use the same
    one); ``id`` is the internal, globally unique key that explanations point at.
    ``image_bytes`` is what the image counts against the space's quota.
    """

    __tablename__ = "transactions"
    __table_args__ = (
        Index("ix_transactions_sub_seq", "subscription_id", "seq"),
        Index("ix_transactions_space_scoring", "space_id", "scoring_id", unique=True),
        # whether a blob is still referenced before it is deleted (blobs are shared by content)
        Index("ix_transactions_image_blob", "image_blob"),
        # a case or request id names one transaction of a subscription
        Index("ix_transactions_sub_external", "subscription_id", "external_id", unique=True),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    scoring_id: Mapped[str] = mapped_column(String(64))
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    image_blob: Mapped[str] = mapped_column(String(64))
    #: Bytes of the stored image, counted in ``spaces.image_bytes`` (0: logged before 0004).
    image_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200), index=True)
    class_index: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[float]] = mapped_column(JSON)
    #: The caller's case or request id (unique per subscription), the image's file name, and
    #: the true label once known (feedback).
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str | None] = mapped_column(String(500), nullable=True)
    feedback: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    #: An object detector's detections, best first: ``{"box": [x0, y0, x1, y1] (the photo's
    #: pixels), "label", "class_index", "score"}`` each; null for a classifier's transaction.
    detections: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Explanation(Base):
    """An explanation job of one transaction and, once finished, its RESULT."""

    __tablename__ = "explanations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    transaction_id: Mapped[str] = mapped_column(
        ForeignKey("transactions.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: The deployment whose model explains (``None``: the transaction's own model). Several
    #: deployments explaining one transaction share a ``compare_group``.
    deployment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    compare_group: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: The key that asked (id, name and role at the time).
    requested_by_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    requested_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: When a report or download first carried it: exported explanations outlive a deletion
    #: of their deployment (it is retired instead) until an admin purges them.
    exported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    panes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The replica that claimed the job, and until when its claim holds without a renewal.
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Annotation(Base):
    """A reviewer's note and verdict on an explanation."""

    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    explanation_id: Mapped[str] = mapped_column(
        ForeignKey("explanations.id", ondelete="CASCADE"), index=True
    )
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    #: ``accepted``, ``needs-follow-up``, ``rejected`` or ``None`` (a note only).
    verdict: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRecord(Base):
    """One state-changing request, chained to the record before it in its space.

    ``n`` counts the space's records from 1; ``hash`` is the SHA-256 of the record's fields and
    ``prev_hash`` (the previous record's ``hash``), so altering, removing or reordering any
    record breaks every hash after it (:func:`limner.store.audit.verify`). The chain's
    ``(space_id, n)`` is its only index: an append writes every index, and waits for it
    (migration 0006).
    """

    __tablename__ = "audit_records"
    __table_args__ = (UniqueConstraint("space_id", "n", name="uq_audit_space_n"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(String(32))
    n: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ExplainerJob(Base):
    """An amortized explainer of a deployment: its training job and, once finished, the
    explainer itself (``meta``: its ``limner-explainer.json``; ``weights_blob``: its
    safetensors weights, data only). Each training makes a new ``version`` of the deployment's
    explainer; method ``amortized`` uses the newest finished one of the deployment's current
    artifact."""

    __tablename__ = "explainers"
    __table_args__ = (Index("ix_explainers_dep_version", "deployment_id", "version", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    #: ``queued``, ``running``, ``finished`` or ``failed``, as explanation jobs.
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: ``transactions`` (the deployment's logged images) or ``upload`` (``images_blob``).
    source: Mapped[str] = mapped_column(String(16))
    #: The training settings (baseline, pairs, epochs, limit, calibration).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: An upload's images, resized to the model's input (one ``.npy`` blob, released once
    #: the training is over).
    images_blob: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The SHA-256 of the deployment's artifact the explainer was trained for.
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stage: Mapped[str] = mapped_column(String(16), default="", server_default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    weights_blob: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The replica that runs it (a restart of that replica queues it again).
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    requested_by_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
