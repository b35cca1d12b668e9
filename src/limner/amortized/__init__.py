"""Amortized explanations: an explainer network learned for one classifier, which explains an
image in one forward pass (FastSHAP, Jethani et al., ICLR 2022), with split-conformal
intervals and a check that says when an image is outside what it learned."""

from limner.amortized.explainer import AmortizedExplainer, load_explainer, train_explainer

__all__ = ["AmortizedExplainer", "load_explainer", "train_explainer"]
