"""Attribution methods. Each implements :class:`~limner.explain.methods.base.Explainer`."""

from __future__ import annotations

from limner.errors import InvalidInputError
from limner.explain.methods.base import Design, Estimate, Explainer
from limner.explain.methods.kernelshap import KernelShapExplainer
from limner.explain.methods.lime import LimeExplainer
from limner.explain.methods.occlusion import OcclusionExplainer
from limner.explain.methods.rise import DriseExplainer, RiseExplainer
from limner.models.gradients import GRADIENT_METHODS

EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (
        KernelShapExplainer,
        LimeExplainer,
        OcclusionExplainer,
        RiseExplainer,
        DriseExplainer,
    )
}
#: Methods that treat the model as a black box (every model can use them); ``drise`` is
#: the detectors' (docs/detection.md), left out of what classifiers are offered.
BLACK_BOX_METHODS = tuple(m for m in EXPLAINERS if m != DriseExplainer.name)
#: Every method; the gradient ones need a model with a torch forward.
METHODS = BLACK_BOX_METHODS + GRADIENT_METHODS


def make_explainer(
    method: str, *, samples: int | None, seed: int, max_samples: int | None = None
) -> Explainer:
    """The explainer for ``method``, with a clear error for unknown names.

    ``max_samples`` bounds the adaptive default (KernelSHAP without ``samples``); the other
    methods use their fixed default budget when ``samples`` is not given.
    """
    try:
        cls = EXPLAINERS[method]
    except KeyError:  # drise is named where a detector is explained
        raise InvalidInputError(
            f"unknown method {method!r}; choose one of {', '.join(BLACK_BOX_METHODS)}"
        ) from None
    if cls is KernelShapExplainer:
        return KernelShapExplainer(samples=samples, seed=seed, max_samples=max_samples)
    return cls(samples=samples, seed=seed)


__all__ = [
    "BLACK_BOX_METHODS",
    "EXPLAINERS",
    "GRADIENT_METHODS",
    "METHODS",
    "Design",
    "Estimate",
    "Explainer",
    "make_explainer",
]
