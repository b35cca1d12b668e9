"""Gradient methods through captum: Integrated Gradients and Grad-CAM on a model's torch forward.

captum computes the attributions; limner adds the rest: the target layer of Grad-CAM (the last
spatial feature map, found by running the model once), the baseline (one of limner's, at the
model's size), batching of the integration steps within a memory budget, the device, and the
completeness check of Integrated Gradients (more steps until the attributions add up to
f(image) − f(baseline) within 1%, unless the caller fixed the steps).

Attributions are taken with respect to the pixels (0..255, at the model's size), through the
model's preprocessing, so they add up per pixel and per region of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from limner.errors import InvalidInputError
from limner.explain.methods.base import Estimate, weighted_r2
from limner.models.base import Model
from limner.models.gradients import GRADIENT_METHODS, UNHOOKED_METHODS, TorchForward

#: Integration steps Integrated Gradients starts with, and the most it goes to on its own.
DEFAULT_STEPS = 64
MAX_AUTO_STEPS = 512
#: Relative completeness gap Integrated Gradients aims for when the steps are not given.
COMPLETENESS_TOLERANCE = 0.01
#: The smallest |f(image) − f(baseline)| the gap is relative to (one probability point).
GAP_FLOOR = 0.01
#: Memory the integration steps of one batch may take (activations kept for the backward pass).
DEFAULT_MEMORY_MB = 1024
#: Bytes kept per activation element in a forward and backward pass: the activation, its
#: gradient and what autograd saves beside it (float32), a conservative factor measured on
#: efficientnet-lite0 and a small ViT.
_BYTES_PER_ACTIVATION = 16


def methods_for(model: Model, black_box: tuple[str, ...]) -> tuple[str, ...]:
    """Every method ``model`` can be explained with (gradient ones only with a torch forward)."""
    forward = model.torch_forward()
    if forward is None:
        return black_box
    extra = GRADIENT_METHODS if forward.hookable else UNHOOKED_METHODS
    return black_box + extra


def require_forward(model: Model, method: str, black_box: tuple[str, ...]) -> TorchForward:
    """The model's torch forward, or a one-line error naming the methods it can use."""
    forward = model.torch_forward()
    if forward is None:
        raise InvalidInputError(
            f"{method} needs gradients, and {model.name} ({type(model).__name__}) exposes none; "
            f"it can be explained with {', '.join(black_box)}"
        )
    if method == "gradcam" and not forward.hookable:
        raise InvalidInputError(
            f"gradcam hooks the model's layers, and {model.name} is {forward.kind}, whose "
            f"layers cannot be hooked; it can be explained with "
            f"{', '.join(methods_for(model, black_box))}"
        )
    return forward


@dataclass
class GradientMap:
    """A pixel attribution at the model's size and what the method reports beside it."""

    pixels: np.ndarray  # (h, w) float64
    probability: float  # f(image)
    base_probability: float  # f(baseline)
    completeness_gap: float | None = None
    steps: int | None = None
    layer: str | None = None
    #: Forward and backward passes of the model this map took (beyond f(image), f(baseline)).
    passes: int = 1


@dataclass
class _Probe:
    """What one forward pass tells about the module: its spatial layers and activation size."""

    spatial: list[str]  # leaf modules run once with an (N, C, H, W) output, H, W > 1, in order
    activations: int  # float elements all leaf modules produced for one image


class GradientAttributor:
    """Integrated Gradients, Grad-CAM, or XRAI's attribution (Integrated Gradients from a black
    and a white baseline, averaged) for one model (captum does the attribution)."""

    def __init__(
        self,
        method: str,
        forward: TorchForward,
        *,
        steps: int | None = None,
        layer: str | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
    ) -> None:
        if method not in GRADIENT_METHODS:
            raise InvalidInputError(f"{method!r} is not a gradient method")
        if steps is not None and not 2 <= steps <= 4096:
            raise InvalidInputError(f"steps must be between 2 and 4096, not {steps}")
        if layer is not None and method != "gradcam":
            raise InvalidInputError("layer applies to gradcam only")
        self.method = method
        self.forward = forward
        self.steps = steps
        self.layer = layer
        self.memory_mb = memory_mb
        self._probe: _Probe | None = None
        if layer is not None:
            self._layer_module(layer)  # a wrong name fails before any work

    def attribute(self, image: np.ndarray, baseline: np.ndarray, class_index: int) -> GradientMap:
        """The attribution of ``class_index`` for uint8 ``image`` (h, w, 3) at the model size
        (``xrai`` ignores ``baseline``: it integrates from black and from white)."""
        if self.method == "xrai":
            return self._two_baselines(image, class_index)
        import torch

        dev = self.forward.device
        x = torch.from_numpy(image.astype(np.float32))[None].to(dev)
        b = torch.from_numpy(baseline.astype(np.float32))[None].to(dev)
        with torch.no_grad():
            p = self.forward.probabilities(torch.cat([x, b]))[:, class_index].cpu().numpy()
        if self.method == "integrated-gradients":
            return self._integrated_gradients(x, b, class_index, float(p[0]), float(p[1]))
        return self._gradcam(x, class_index, float(p[0]), float(p[1]))

    # --- Integrated Gradients -----------------------------------------------------------------

    def _two_baselines(self, image: np.ndarray, class_index: int) -> GradientMap:
        """XRAI's attribution: Integrated Gradients from black and from white, averaged.

        The average adds up to f(image) − (f(black) + f(white)) / 2, so that mean is the base
        probability and the completeness gap is measured against it."""
        ig = GradientAttributor("integrated-gradients", self.forward, steps=self.steps)
        ig._probe = self._probe
        maps = [ig.attribute(image, np.full_like(image, v), class_index) for v in (0, 255)]
        self._probe = ig._probe
        pixels = (maps[0].pixels + maps[1].pixels) / 2.0
        fx = maps[0].probability
        fb = (maps[0].base_probability + maps[1].base_probability) / 2.0
        gap = abs(float(pixels.sum()) - (fx - fb)) / max(abs(fx - fb), GAP_FLOOR)
        return GradientMap(
            pixels,
            fx,
            fb,
            completeness_gap=gap,
            steps=max(m.steps or 0 for m in maps),
            passes=sum(m.passes for m in maps),
        )

    def _integrated_gradients(
        self, x: Any, b: Any, class_index: int, fx: float, fb: float
    ) -> GradientMap:
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(self.forward.probabilities)
        steps = self.steps or DEFAULT_STEPS
        batch = self.internal_batch_size(x)
        passes = 0
        while True:
            passes += steps
            attr = ig.attribute(
                x, baselines=b, target=class_index, n_steps=steps, internal_batch_size=batch
            )
            pixels = attr[0].sum(dim=-1).detach().cpu().double().numpy()
            gap = abs(float(pixels.sum()) - (fx - fb)) / max(abs(fx - fb), GAP_FLOOR)
            if self.steps is not None or gap <= COMPLETENESS_TOLERANCE or steps >= MAX_AUTO_STEPS:
                return GradientMap(pixels, fx, fb, completeness_gap=gap, steps=steps, passes=passes)
            steps *= 2

    def internal_batch_size(self, x: Any) -> int:
        """Integration steps per forward/backward pass that fit the memory budget."""
        per_image = self.probe(x).activations * _BYTES_PER_ACTIVATION
        return max(1, int(self.memory_mb * 2**20 // max(per_image, 1)))

    # --- Grad-CAM -----------------------------------------------------------------------------

    def _gradcam(self, x: Any, class_index: int, fx: float, fb: float) -> GradientMap:
        from captum.attr import LayerAttribution, LayerGradCam

        name = self.layer or self.target_layer(x)
        module = self._layer_module(name)
        if self.forward.feature_layout == "NHWC":
            attr = self._gradcam_channels_last(x, module, class_index)
        else:
            cam = LayerGradCam(self.forward.scores, module)
            attr = cam.attribute(x, target=class_index, relu_attributions=True)
        if attr.ndim != 4:
            raise InvalidInputError(
                f"layer {name!r} gives no spatial feature map (output {tuple(attr.shape)}); "
                f"choose a convolutional layer"
            )
        h, w = x.shape[1:3]
        up = LayerAttribution.interpolate(attr.sum(dim=1, keepdim=True), (h, w), "bilinear")
        pixels = up[0, 0].detach().cpu().double().numpy()
        return GradientMap(pixels, fx, fb, layer=name)

    def _gradcam_channels_last(self, x: Any, module: Any, class_index: int) -> Any:
        """Grad-CAM on a layer whose feature maps are ``(N, H, W, C)`` (Keras): captum's
        assumes channels first. Returns ``(N, 1, H, W)``, as captum's does."""
        import torch

        seen: list[Any] = []
        hook = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            with torch.enable_grad():
                inputs = x.detach().clone().requires_grad_(True)
                score = self.forward.scores(inputs)[:, class_index].sum()
                if not seen or not isinstance(seen[-1], torch.Tensor):
                    raise InvalidInputError("gradcam: the layer gave no tensor output")
                activation = seen[-1]
                (grad,) = torch.autograd.grad(score, activation)
        finally:
            hook.remove()
        if activation.ndim != 4:
            return activation.detach()
        weights = grad.mean(dim=(1, 2), keepdim=True)
        cam = torch.relu((weights * activation).sum(dim=3, keepdim=True))
        return cam.permute(0, 3, 1, 2).detach()

    def target_layer(self, x: Any) -> str:
        """The last layer whose output is a spatial feature map (H and W above 1)."""
        spatial = self.probe(x).spatial
        if not spatial:
            raise InvalidInputError(
                "gradcam found no spatial feature map in the model; name a layer with --layer"
            )
        return spatial[-1]

    def _layer_module(self, name: str) -> Any:
        layers = dict(self.forward.layers())
        if name not in layers:
            raise InvalidInputError(
                f"the model has no layer {name!r}; its layers: {', '.join(layers) or 'none'}"
            )
        return layers[name]

    # --- one probing forward pass ---------------------------------------------------------------

    def probe(self, x: Any) -> _Probe:
        """Run the module once on ``x`` to find its spatial layers and activation size."""
        if self._probe is not None:
            return self._probe
        import torch

        spatial: list[str] = []
        calls: dict[str, int] = {}
        sizes = [0]
        hooks = []

        def record(name: str) -> Any:
            def hook(_module: Any, _inputs: Any, out: Any) -> None:
                calls[name] = calls.get(name, 0) + 1
                if isinstance(out, torch.Tensor) and out.is_floating_point():
                    sizes[0] += out[:1].numel()
                    if self.forward.spatial(out):
                        spatial.append(name)

            return hook

        for name, module in self.forward.leaves():
            hooks.append(module.register_forward_hook(record(name)))
        try:
            with torch.no_grad():
                self.forward.raw(x[:1])
        finally:
            for h in hooks:
                h.remove()
        if not hooks:  # layers cannot be hooked: size the batch by the input alone, generously
            sizes[0] = int(x[:1].numel()) * 200
        # a module run several times (a shared activation) cannot be Grad-CAM's target: the
        # hook would see only one of its outputs
        once = [name for name in spatial if calls[name] == 1]
        self._probe = _Probe(spatial=once, activations=sizes[0])
        return self._probe


def region_sums(pixels: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Attribution summed over each region's pixels (``labels`` at the same size), (count,)."""
    return np.bincount(labels.ravel(), weights=pixels.ravel(), minlength=count)[:count]


def gradient_estimate(g: GradientMap, labels: np.ndarray, count: int) -> Estimate:
    """Region weights of a pixel attribution: its sum over each region.

    For Integrated Gradients the weights add up (to within the completeness gap) to
    f(image) − f(baseline), so the intercept is f(baseline); Grad-CAM's map has no such scale.
    """
    weights = region_sums(g.pixels, labels, count)
    intercept = g.base_probability if g.completeness_gap is not None else 0.0
    return Estimate(
        weights=weights, intercept=intercept, fit_r2=0.0, used_features=int((weights != 0).sum())
    )


def curve_r2(estimate: Estimate, z: np.ndarray, y: np.ndarray, *, additive: bool) -> float:
    """How well the region weights predict the model on the deletion and insertion masks ``z``.

    ``additive``: intercept + z·w as it stands (Integrated Gradients, in probability units);
    otherwise the best straight line in z·w (Grad-CAM, whose map has no units).
    """
    s = np.asarray(z, np.float64) @ estimate.weights
    if additive:
        return weighted_r2(y, estimate.intercept + s)
    if np.ptp(s) == 0:
        return 0.0
    slope, icept = np.polyfit(s, y, 1)
    return weighted_r2(y, icept + slope * s)


def gradient_fields(maps: list[GradientMap], classes: list[int]) -> dict[str, Any]:
    """What a gradient method adds to the :class:`Explanation`: the pixel maps, and the
    completeness gaps, steps and layer."""
    steps = [g.steps for g in maps if g.steps is not None]
    return {
        "saliency": {c: g.pixels for c, g in zip(classes, maps, strict=True)},
        "completeness": {
            c: g.completeness_gap
            for c, g in zip(classes, maps, strict=True)
            if g.completeness_gap is not None
        },
        "steps": max(steps) if steps else None,
        "layer": next((g.layer for g in maps if g.layer), None),
    }
