"""limner as the ``explainer`` of a KServe InferenceService.

``limner kserve-explainer`` serves the routes KServe's router sends to an explainer (the v1
``POST /v1/models/{name}:explain`` and the health routes a KServe ``ModelServer`` answers),
scores through the predictor the operator names (Open Inference over HTTP or gRPC) and answers
with limner's RESULT. It runs on limner's own FastAPI: nothing of the ``kserve`` package is
imported at run time.
"""

from __future__ import annotations

from limner.kserve.app import create_explainer_app
from limner.kserve.config import ExplainerConfig

__all__ = ["ExplainerConfig", "create_explainer_app"]
