"""The model protocol every adapter implements, and the shared output handling.

An adapter overrides ``_forward`` (preprocessed tensor in, raw output out); the base class owns
preprocessing (from the metadata), batching, and turning logits or a single sigmoid output into
class probabilities.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from limner.errors import InvalidInputError, ModelError
from limner.imaging.transform import resize
from limner.models.metadata import ModelMetadata, Signature

if TYPE_CHECKING:
    from limner.models.gradients import TorchForward

#: How far outside [0, 1] a model declared to output probabilities may go (rounding of float16
#: and float32 softmax outputs); its outputs are clipped into [0, 1], and beyond this refused.
PROBABILITY_SLACK = 1e-3


class Model(ABC):
    """An image classifier: RGB uint8 images at the model's size in, probabilities out."""

    #: Batch size at which this adapter's forward pass is fastest (measured per backend).
    preferred_batch_size: int = 32

    def __init__(self, metadata: ModelMetadata, *, name: str | None = None) -> None:
        self.metadata = metadata
        self.name = name or metadata.name

    @property
    def labels(self) -> list[str]:
        """Class labels, in output order."""
        return self.metadata.labels

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` the model takes."""
        return self.metadata.input.width, self.metadata.input.height

    @property
    def problem_type(self) -> str:
        """``binary`` or ``multiclass``."""
        return self.metadata.problem_type

    @property
    def num_classes(self) -> int:
        """Number of classes (two for any binary model)."""
        return len(self.labels)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, C)`` float32 for uint8 images ``(N, H, W, 3)`` at the model size."""
        return self.predict_tensor(self.preprocess(images))

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """The model-ready tensor for uint8 images ``(N, H, W, 3)`` at the model size."""
        images = np.asarray(images)
        w, h = self.input_size
        if images.ndim != 4 or images.shape[1:] != (h, w, 3) or images.dtype != np.uint8:
            raise InvalidInputError(
                f"{self.name}: expected uint8 images of shape (N, {h}, {w}, 3), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        return self.metadata.input.preprocess(images)

    def predict_tensor(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, C)`` float32 for a tensor made by :meth:`preprocess`.

        The explanation engine perturbs in this space (the preprocessing is per pixel, so mixing
        image and baseline after it is exact) and batchers share batches of it.
        """
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return self._to_probabilities(np.asarray(self._forward(x), dtype=np.float32))

    def predict_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Probabilities for RGB uint8 images of any size (each resized to the model's size)."""
        w, h = self.input_size
        batch = (
            np.stack([resize(im, w, h) for im in images])
            if images
            else np.zeros((0, h, w, 3), np.uint8)
        )
        return self.predict(batch)

    @abstractmethod
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Run the model on a preprocessed batch; return its raw output ``(N, K)``."""

    def _to_probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` from the model's raw output: a softmax of logits, a
        single sigmoid output made two classes. A :class:`ModelError` where the output is not
        finite (NaN, infinity), or is declared probabilities and lies outside [0, 1]."""
        if raw.ndim == 1:
            raw = raw[:, None]
        raw = raw.reshape(raw.shape[0], -1)
        logits = self.metadata.output == "logits"
        single = raw.shape[1] == 1 and self.num_classes == 2
        if raw.shape[1] != self.num_classes and not single:
            raise ModelError(
                f"{self.name}: the model returned {raw.shape[1]} outputs for "
                f"{self.num_classes} labels"
            )
        if not np.isfinite(raw).all():
            raise ModelError(f"{self.name}: the model returned scores that are NaN or infinite")
        if not logits:
            if raw.size and (raw.min() < -PROBABILITY_SLACK or raw.max() > 1 + PROBABILITY_SLACK):
                raise ModelError(
                    f"{self.name}: the model returned probabilities outside [0, 1] (if its "
                    "outputs are logits, its metadata should say output: logits)"
                )
            raw = np.clip(raw, 0.0, 1.0)
        if single:
            p = 1.0 / (1.0 + np.exp(-raw[:, 0])) if logits else raw[:, 0]
            return np.stack([1.0 - p, p], axis=1).astype(np.float32)
        if logits:
            z = raw - raw.max(axis=1, keepdims=True)
            e = np.exp(z)
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return raw.astype(np.float32)

    def torch_forward(self) -> TorchForward | None:
        """The differentiable torch forward for gradient methods, or None (a black box)."""
        return None

    def signature(self) -> Signature:
        """What the model itself says of its input and output tensors (fixed sizes, layout,
        element type, output count), checked against its metadata when it is deployed
        (:func:`limner.models.checks.verify_model`); empty where it says nothing."""
        return Signature()

    def rename(self, name: str) -> None:
        """Call the model ``name`` (its metadata's name too: what pages and records show)."""
        if name and name != self.metadata.name:
            self.metadata = replace(self.metadata, name=name)
        self.name = name or self.name

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, connections)."""

    def __repr__(self) -> str:
        w, h = self.input_size
        return f"<{type(self).__name__} {self.name!r} {w}×{h} {self.num_classes} classes>"


class CallableModel(Model):
    """A model given as a Python function of uint8 images → probabilities (or logits)."""

    preferred_batch_size = 64

    def __init__(self, fn, metadata: ModelMetadata, *, name: str | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(metadata, name=name)
        self._fn = fn

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(x))
