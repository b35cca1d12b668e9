"""The differentiable torch forward a model may expose, for gradient explanations.

:meth:`Model.torch_forward` returns a :class:`TorchForward` when the model is a PyTorch model
(an in-memory module, TorchScript, a Keras 3 model on the torch backend, the built-in network):
the module, and how float pixels become its input, so that gradients flow from the class score
through the model *and* its preprocessing back to the pixels. Models without one (ONNX, remote)
can only be explained as black boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limner.models.metadata import ModelMetadata

#: Attribution methods that need gradients (the black-box ones every model can use are listed
#: in ``limner.explain.methods``). ``xrai`` grows its regions from Integrated Gradients.
GRADIENT_METHODS = ("integrated-gradients", "gradcam", "xrai")
#: The gradient methods that need no forward hooks (so also work on TorchScript).
UNHOOKED_METHODS = ("integrated-gradients", "xrai")


@dataclass
class TorchForward:
    """A differentiable forward: float pixels ``(N, H, W, 3)`` in 0..255 → class scores.

    ``module`` is called on ``prepare(pixels)`` (through ``call`` when given); ``hookable``
    says whether its layers run through ``nn.Module.__call__`` (so forward hooks fire, as
    Grad-CAM needs): not so for TorchScript. ``named_layers`` lists the layers where they are
    not the module's registered submodules (a Keras 3 model on the torch backend), and
    ``feature_layout`` says how its layers lay out feature maps (Keras: channels-last).
    """

    module: Any
    metadata: ModelMetadata
    device: Any
    hookable: bool = True
    call: Callable[[Any], Any] | None = None
    #: ``(name, layer, is_leaf)`` of every hookable layer, when not ``module.named_modules()``.
    named_layers: list[tuple[str, Any, bool]] | None = None
    #: ``NCHW`` (PyTorch's feature maps) or ``NHWC`` (Keras' channels-last ones).
    feature_layout: str = "NCHW"
    #: What the model is, for messages (``a TorchScript model``).
    kind: str = "a PyTorch model"

    def prepare(self, pixels: Any) -> Any:
        """The model's input tensor for float pixels ``(N, H, W, 3)``, differentiably."""
        import torch

        spec = self.metadata.input
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device)
        std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device)
        x = (pixels * float(spec.scale) - mean) / std
        if spec.channels == 1:
            x = x.mean(dim=3, keepdim=True)
        if spec.layout == "NCHW":
            x = x.permute(0, 3, 1, 2)
        return x.contiguous()

    def raw(self, pixels: Any) -> Any:
        """The module's raw output ``(N, K)`` (logits or probabilities, per the metadata)."""
        out = (self.call or self.module)(self.prepare(pixels))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "logits"):  # a transformers ModelOutput
            out = out.logits
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return out.reshape(out.shape[0], -1).float()

    def probabilities(self, pixels: Any) -> Any:
        """Class probabilities ``(N, C)`` as the model's ``predict`` gives them."""
        import torch

        raw = self.raw(pixels)
        logits = self.metadata.output == "logits"
        if raw.shape[1] == 1 and len(self.metadata.labels) == 2:
            p = torch.sigmoid(raw[:, 0]) if logits else raw[:, 0]
            return torch.stack([1.0 - p, p], dim=1)
        return torch.softmax(raw, dim=1) if logits else raw

    def scores(self, pixels: Any) -> Any:
        """Class scores for Grad-CAM: logits when the model gives them for several classes,
        else probabilities."""
        raw = self.raw(pixels)
        if self.metadata.output == "logits" and raw.shape[1] == len(self.metadata.labels) > 2:
            return raw
        return self.probabilities(pixels)

    def layers(self) -> list[tuple[str, Any]]:
        """The named layers forward hooks can see (empty when they cannot be hooked)."""
        if not self.hookable:
            return []
        if self.named_layers is not None:
            return [(name, layer) for name, layer, _ in self.named_layers]
        return [(name, m) for name, m in self.module.named_modules() if name]

    def leaves(self) -> list[tuple[str, Any]]:
        """The named layers that hold no other layer (what one forward pass is probed on)."""
        if not self.hookable:
            return []
        if self.named_layers is not None:
            return [(name, layer) for name, layer, leaf in self.named_layers if leaf]
        return [(name, m) for name, m in self.layers() if not any(True for _ in m.children())]

    def spatial(self, out: Any) -> bool:
        """Whether a layer's output is a feature map with height and width above 1."""
        if getattr(out, "ndim", 0) != 4:
            return False
        h, w = (out.shape[1], out.shape[2]) if self.feature_layout == "NHWC" else out.shape[2:]
        return bool(h > 1 and w > 1)


def module_forward(module: Any, metadata: ModelMetadata, device: Any) -> TorchForward:
    """The forward of a ``torch.nn.Module`` or TorchScript module on ``device``."""
    import torch

    scripted = isinstance(module, torch.jit.ScriptModule)
    return TorchForward(
        module=module,
        metadata=metadata,
        device=device,
        hookable=not scripted,
        kind="a TorchScript model" if scripted else "a PyTorch model",
    )
