"""A detector's differentiable forward: its detections as torch tensors, for the gradient methods.

A detector with a torch module (TorchScript, a Hugging Face object-detection directory, an
in-memory ``torch.nn.Module``) exposes a :class:`DetectorForward`: the module, how a
preprocessed batch becomes the named outputs its layout reads (as tensors that keep their
gradients), and the metadata that says how to read them. :meth:`DetectorForward.candidates`
reads them, per image, as boxes (``xyxy`` pixels of the input), objectness scores and class
vectors, the same way the black-box decoder does, with one difference: a raw head's candidates
are all kept, before the score threshold and NMS. A box score taken over them (the maximum of
D-RISE's similarity) is then continuous in the pixels, as the integration path of Integrated
Gradients needs; where the explained box is one of the image's own detections it equals the
black-box score there. Graphs that run their own NMS (``"layout": "nms"``) give their kept
detections, with whatever gradients flow through their selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limner.models.detection import corners
from limner.models.metadata import ModelMetadata
from limner.models.onnx_detector import DetectionSpec, detector_metadata, raw_rows

#: Named output tensors of a preprocessed batch.
TorchOutputs = Callable[[Any], dict[str, Any]]


@dataclass
class DetectorForward:
    """A detector's module and how a preprocessed batch (a tensor, the metadata's ``input``)
    becomes its named outputs; ``hookable``: whether its layers run through
    ``nn.Module.__call__`` (Grad-CAM's forward hooks; not so for TorchScript)."""

    module: Any
    outputs: TorchOutputs
    metadata: dict[str, Any]
    hookable: bool = True
    kind: str = "a PyTorch detector"

    @property
    def model_metadata(self) -> ModelMetadata:
        """The labels and input of the detector, as a classifier's metadata."""
        return detector_metadata(self.metadata)[0]

    @property
    def spec(self) -> DetectionSpec:
        """The ``detection`` block: how the outputs are read."""
        return detector_metadata(self.metadata)[1]

    def candidates(self, x: Any) -> list[tuple[Any, Any, Any]]:
        """Per image of the preprocessed batch ``x``: boxes ``(K, 4)`` (``xyxy`` pixels of the
        input), objectness scores ``(K,)`` and class vectors ``(K, C)``, as tensors that keep
        their gradients (a raw head's every candidate; a graph's own kept detections)."""
        import torch

        meta, spec = detector_metadata(self.metadata)
        classes = len(meta.labels)
        n = int(x.shape[0])
        per_image = self._rows(self.outputs(x), spec, n)
        if per_image is None:  # a graph that takes one image at a time
            per_image = [self.outputs(x[i : i + 1]) for i in range(n)]
        found = []
        for rows in per_image:
            if spec.layout == "raw":
                a = raw_rows(rows[spec.raw], classes).float()
                boxes, vectors = a[:, :4], a[:, 4:]
                scores = vectors.max(dim=1).values
            else:
                boxes = rows[spec.boxes].reshape(-1, 4).float()
                scores = rows[spec.scores].reshape(-1).float()
                labels = rows[spec.labels].reshape(-1).round().long()
                real = labels >= 0  # padding rows have a negative class
                boxes, scores, labels = boxes[real], scores[real], labels[real]
                vectors = torch.nn.functional.one_hot(labels, classes).float()
            w, h = meta.input.width, meta.input.height
            if spec.normalized:
                boxes = boxes * boxes.new_tensor([w, h, w, h])
            found.append((corners(boxes, spec.box_format, torch.cat), scores, vectors))
        return found

    @staticmethod
    def _rows(out: dict[str, Any], spec: DetectionSpec, n: int) -> list[dict[str, Any]] | None:
        """The outputs of each of the ``n`` images of a batch, or None when the outputs are
        not batched (one image's detections)."""
        if n == 1:
            return [out]
        lead = out[spec.raw if spec.layout == "raw" else spec.boxes]
        if lead.ndim == 3 and lead.shape[0] == n:
            return [{k: v[i] for k, v in out.items()} for i in range(n)]
        return None
