"""Vertex-style views of a stored explanation, drawn from what was stored, not recomputed.

A view needs the photo and the class's attribution at every pixel. Both come from the store:
the transaction's image blob; for a gradient method the pixel attribution map stored beside the
panes when the job finished (``.npy``, read without unpickling); otherwise the ``labels`` pane
(16-bit PNG, pixel value = region id) with the RESULT's region weights. A view is drawn at most
``VIEW_MAX_SIDE`` pixels on its longer side, and at most ``VIEW_SLOTS`` are drawn at once.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from limner.errors import NotFoundError
from limner.explain import DEFAULT_METHOD
from limner.imaging import decode_image, encode_png
from limner.imaging.saliency import upsample
from limner.imaging.transform import fit_within, resize, resize_labels
from limner.imaging.views import ViewSettings, decode_map, render_view
from limner.jobs import FINISHED
from limner.jobs.runner import attribution_key
from limner.service.state import ServiceState
from limner.store.tables import Explanation, Subscription, Transaction

#: Longest side of a view drawn by the service, in pixels.
VIEW_MAX_SIDE = 2048
#: Views drawn at once by one process (each holds the decoded photo while it is drawn).
VIEW_SLOTS = 2
_slots = threading.BoundedSemaphore(VIEW_SLOTS)


def base_settings(state: ServiceState, exp: Explanation) -> ViewSettings:
    """The view shown when a request names no setting: the subscription's ``view`` over the
    method's Vertex default."""
    method = str((exp.result or {}).get("method") or exp.settings.get("method", DEFAULT_METHOD))
    default = ViewSettings.default_for(method)
    with state.db.session() as s:
        sub = s.scalar(
            select(Subscription)
            .join(Transaction, Transaction.subscription_id == Subscription.id)
            .where(Transaction.id == exp.transaction_id)
        )
    stored = (sub.explainability or {}).get("view") if sub is not None else None
    return ViewSettings.from_dict(stored, default) if isinstance(stored, dict) else default


def _class_result(exp: Explanation, class_index: int) -> dict[str, Any]:
    if exp.status != FINISHED or not exp.result:
        raise NotFoundError(f"explanation {exp.id!r} has no views yet (it is {exp.status})")
    for c in exp.result.get("explanations", []):
        if c.get("class_index") == class_index:
            return dict(c)
    raise NotFoundError(f"explanation {exp.id!r} did not explain class {class_index}")


def _attribution(
    state: ServiceState, exp: Explanation, c: dict[str, Any], width: int, height: int
) -> np.ndarray:
    """The class's attribution at ``width`` × ``height``: the stored pixel map (gradient
    methods), else the region weights painted over the stored label map."""
    panes = exp.panes or {}
    data_key = panes.get(attribution_key(int(c["class_index"])))
    if data_key is not None:
        return upsample(decode_map(state.blobs.get(data_key)), width, height)
    labels_key = panes.get(f"{c['class_index']}/labels")
    if labels_key is None:
        raise NotFoundError(f"explanation {exp.id!r} has no stored region map to draw views from")
    with Image.open(io.BytesIO(state.blobs.get(labels_key))) as pane:
        labels = np.asarray(pane)
    labels = resize_labels(labels, width, height)
    size = max(int(c.get("total_features") or 0), int(labels.max(initial=0)) + 1)
    weights = np.zeros(size, np.float32)
    for r in c.get("regions", []):
        weights[int(r["id"])] = float(r["weight"])
    return np.take(weights, labels)


def render_stored_view(
    state: ServiceState, exp: Explanation, class_index: int, settings: ViewSettings
) -> bytes:
    """A view of one explained class as PNG, drawn from the stored photo, region map or pixel
    map and RESULT (404 when the explanation has not finished or did not explain the class)."""
    c = _class_result(exp, class_index)
    with state.db.session() as s:
        image_key = s.scalar(
            select(Transaction.image_blob).where(Transaction.id == exp.transaction_id)
        )
    if image_key is None:
        raise NotFoundError(f"the image of explanation {exp.id!r} is no longer stored")
    with _slots:
        image = decode_image(state.blobs.get(image_key), max_pixels=state.settings.max_pixels)
        width, height = fit_within(image.shape[1], image.shape[0], VIEW_MAX_SIDE)
        image = resize(image, width, height)
        values = _attribution(state, exp, c, width, height)
        return encode_png(render_view(image, values, settings))
