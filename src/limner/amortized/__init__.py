"""Amortized explanations: an explainer network learned for one classifier, which explains an
image in one forward pass (FastSHAP, Jethani et al., ICLR 2022), with split-conformal
intervals and a check that says when an image is outside what it learned.

The network needs torch; it is imported when one of the names below is first used, so that
importing the engine (and every CLI command) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from limner.amortized.explainer import AmortizedExplainer, load_explainer, train_explainer

__all__ = ["AmortizedExplainer", "load_explainer", "train_explainer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from limner.amortized import explainer

        return getattr(explainer, name)
    raise AttributeError(f"module 'limner.amortized' has no attribute {name!r}")
