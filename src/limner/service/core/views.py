"""Rows to response bodies."""

from __future__ import annotations

import copy
from pathlib import PurePath
from typing import Any

import numpy as np

from limner.jobs.models import UPLOAD_PREFIX, is_url
from limner.service.core.detections import best_box
from limner.service.schemas import (
    ClassProbability,
    DeploymentRead,
    ExplanationRead,
    Prediction,
    SubscriptionRead,
    TransactionRead,
)
from limner.store.tables import Deployment, Explanation, Subscription, Transaction

#: Classes listed with a transaction.
TOP_CLASSES = 5


def deployment_view(dep: Deployment) -> DeploymentRead:
    """A deployment as JSON."""
    meta = dep.model_metadata
    return DeploymentRead(
        id=dep.id,
        name=dep.name,
        model=public_model(dep.model, dep.id),
        problem_type=str(meta.get("problem_type", "multiclass")),
        num_classes=len(meta.get("labels", [])),
        input_size=[int(meta["input"]["width"]), int(meta["input"]["height"])],
        inference_url=f"/v2/models/{dep.name}",
        artifact_sha256=dep.artifact_sha256,
        created_at=dep.created_at,
    )


def public_model(spec: str, dep_id: str) -> str:
    """What a deployment's ``model`` shows: never a server path. Uploads read
    ``upload:PATH`` (inside the upload), server paths ``server:NAME``."""
    if spec.startswith(UPLOAD_PREFIX) or is_url(spec) or ("/" not in spec and "\\" not in spec):
        return spec
    marker = f"/models/{dep_id}/"  # uploads stored before ``upload:`` existed
    if marker in spec:
        return UPLOAD_PREFIX + spec.split(marker, 1)[1]
    if spec.endswith(f"/models/{dep_id}"):
        return UPLOAD_PREFIX + "./"
    return "server:" + PurePath(spec).name


def subscription_view(sub: Subscription) -> SubscriptionRead:
    """A subscription as JSON."""
    meta = sub.model_metadata
    return SubscriptionRead(
        id=sub.id,
        name=sub.name,
        deployment_id=sub.deployment_id,
        scoring_url=sub.scoring_url,
        problem_type=str(meta.get("problem_type", "multiclass")),
        num_classes=len(meta.get("labels", [])),
        explainability=sub.explainability or {"enabled": False},
        created_at=sub.created_at,
    )


def top_classes(probabilities: list[float], labels: list[str], k: int) -> list[ClassProbability]:
    """The ``k`` most probable classes, most probable first."""
    p = np.asarray(probabilities)
    order = np.argsort(-p, kind="stable")[:k]
    return [
        ClassProbability(label=labels[i], class_index=int(i), probability=float(p[i]))
        for i in order
    ]


def transaction_view(
    tx: Transaction,
    labels: list[str],
    base_url: str,
    *,
    deployment_id: str | None = None,
    explained: bool | None = None,
) -> TransactionRead:
    """A transaction as JSON (with its top classes, the URL of its image, its case id, file
    name and feedback; ``deployment_id`` and ``explained`` as the caller found them)."""
    return TransactionRead(
        id=tx.scoring_id,
        scoring_id=tx.scoring_id,
        subscription_id=tx.subscription_id,
        label=tx.label,
        class_index=tx.class_index,
        probability=tx.probability,
        predictions=top_classes(tx.probabilities, labels, TOP_CLASSES),
        width=tx.width,
        height=tx.height,
        image_url=f"{base_url}/v1/transactions/{tx.scoring_id}/image",
        created_at=tx.created_at,
        external_id=tx.external_id,
        source=tx.source,
        feedback=tx.feedback,
        misclassified=None if tx.feedback is None else tx.feedback != tx.label,
        deployment_id=deployment_id,
        explained=explained,
        detections=tx.detections,  # type: ignore[arg-type]
    )


def prediction_view(
    p: np.ndarray,
    labels: list[str],
    scoring_id: str | None,
    detections: list[dict[str, Any]] | None = None,
) -> Prediction:
    """One scored image as JSON (an object detector's: its boxes, led by the best one)."""
    if detections is not None:
        label, ci, score = best_box(detections)
        return Prediction(
            scoring_id=scoring_id,
            label=label,
            class_index=ci,
            probability=score,
            probabilities={label: float(x) for label, x in zip(labels, p, strict=True)},
            detections=detections,  # type: ignore[arg-type]
        )
    ci = int(np.argmax(p))
    return Prediction(
        scoring_id=scoring_id,
        label=labels[ci],
        class_index=ci,
        probability=float(p[ci]),
        probabilities={label: float(x) for label, x in zip(labels, p, strict=True)},
    )


def explanation_view(
    exp: Explanation, scoring_id: str, base_url: str, *, deployment_id: str | None = None
) -> ExplanationRead:
    """An explanation (of the transaction ``scoring_id``) as JSON; pane references become
    absolute URLs. ``deployment_id`` is the transaction's own deployment, shown when the
    explanation names none of its own."""
    result = copy.deepcopy(exp.result) if exp.result else None
    if result:
        for item in result.get("explanations", []):
            images = item.get("images") or {}
            for kind, ref in list(images.items()):
                if isinstance(ref, str) and ref.startswith("/"):
                    images[kind] = base_url + ref
    return ExplanationRead(
        id=exp.id,
        explanation_id=exp.id,
        scoring_id=scoring_id,
        status=exp.status,  # type: ignore[arg-type]
        progress=round(float(exp.progress), 4),
        error=exp.error,
        settings=exp.settings,
        result=result,
        created_at=exp.created_at,
        started_at=exp.started_at,
        finished_at=exp.finished_at,
        deployment_id=exp.deployment_id or deployment_id,
        requested_by=exp.requested_by,
        requested_role=exp.requested_role,
        exported_at=exp.exported_at,
    )
