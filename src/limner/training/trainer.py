"""``train(data_dir, out_dir)``: read a folder of images, fit a classifier, write a model directory.

The model directory is what ``limner.load_model`` and the service's deployments take::

    MODEL_DIR/model.onnx            the whole network (uint8 pixels preprocessed as in the JSON)
    MODEL_DIR/limner-model.json     labels, input preprocessing, output kind, problem type
    MODEL_DIR/metrics.json          per-epoch history, final validation accuracy, confusion matrix
    MODEL_DIR/confusion_matrix.png  the validation confusion matrix

The final figures in ``metrics.json`` are measured on the exported ONNX model, so they are the
accuracy of exactly what gets deployed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from limner.errors import InvalidInputError
from limner.models.metadata import METADATA_FILE, InputSpec, ModelMetadata
from limner.training import architectures as archs
from limner.training.data import ImageFolderData, load_image_folder, typical_size
from limner.training.loop import EpochStats, FitSettings, fit
from limner.training.report import (
    CONFUSION_FILE,
    METRICS_FILE,
    confusion_matrix,
    plot_confusion,
    write_metrics,
)

MODEL_FILE = "model.onnx"

#: Epochs when none are given: the head on frozen features trains in milliseconds per epoch.
DEFAULT_EPOCHS = {archs.EFFICIENTNET_LITE0: 30, archs.SMALL_CNN: 15}

StageCallback = Callable[[str, int, int], Any]


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where the model lies, its metrics, and the trained module."""

    model_dir: Path
    metrics: dict[str, Any]
    module: nn.Module
    metadata: ModelMetadata

    @property
    def validation_accuracy(self) -> float:
        """Accuracy of the exported model on the validation images."""
        return float(self.metrics["validation_accuracy"])


def _hflip_np(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[:, :, ::-1])


def _hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=generator) < 0.5
    out = x.clone()
    out[flip] = out[flip].flip(-1)
    return out


def _fit_frozen_backbone(
    data: ImageFolderData,
    spec: InputSpec,
    settings: FitSettings,
    on_stage: StageCallback,
    on_epoch: Callable[[EpochStats], Any] | None,
) -> tuple[nn.Module, list[EpochStats]]:
    backbone = archs.frozen_backbone(data.image_size)
    # The training set is doubled with mirrored copies; features are computed once.
    train_images = np.concatenate([data.train.images, _hflip_np(data.train.images)])
    train_labels = np.concatenate([data.train.labels, data.train.labels])
    total = len(train_images) + len(data.validation)

    def features(images: np.ndarray, offset: int) -> torch.Tensor:
        def report(done: int, _n: int) -> None:
            on_stage("features", offset + done, total)

        return torch.from_numpy(backbone(spec.preprocess(images), report))

    f_train = features(train_images, 0)
    f_val = features(data.validation.images, len(train_images))
    torch.manual_seed(settings.seed)  # the head's initial weights come from the seed too
    head = archs.linear_head(len(data.classes))
    on_stage("training", 0, settings.epochs)
    history = fit(
        head,
        (f_train, torch.from_numpy(train_labels)),
        (f_val, torch.from_numpy(data.validation.labels)),
        settings,
        on_epoch=on_epoch,
    )
    return archs.FeatureClassifier(backbone.module, head).eval(), history


def _fit_small_cnn(
    data: ImageFolderData,
    spec: InputSpec,
    settings: FitSettings,
    on_stage: StageCallback,
    on_epoch: Callable[[EpochStats], Any] | None,
) -> tuple[nn.Module, list[EpochStats]]:
    torch.manual_seed(settings.seed)
    module = archs.SmallCNN(len(data.classes))
    on_stage("training", 0, settings.epochs)
    history = fit(
        module,
        (torch.from_numpy(spec.preprocess(data.train.images)), torch.from_numpy(data.train.labels)),
        (
            torch.from_numpy(spec.preprocess(data.validation.images)),
            torch.from_numpy(data.validation.labels),
        ),
        settings,
        augment=_hflip,
        on_epoch=on_epoch,
    )
    return module.eval(), history


def _evaluate_export(model_dir: Path, data: ImageFolderData) -> tuple[float, np.ndarray]:
    from limner.models import load_model

    model = load_model(model_dir, device="cpu")
    try:
        probs = np.concatenate(
            [
                model.predict(data.validation.images[i : i + 64])
                for i in range(0, len(data.validation), 64)
            ]
        )
    finally:
        model.close()
    predicted = probs.argmax(axis=1)
    accuracy = float((predicted == data.validation.labels).mean())
    return accuracy, confusion_matrix(data.validation.labels, predicted, len(data.classes))


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    image_size: int | None = None,
    epochs: int | None = None,
    arch: str = archs.EFFICIENTNET_LITE0,
    seed: int = 0,
    on_epoch: Callable[[EpochStats], Any] | None = None,
    on_stage: StageCallback | None = None,
) -> TrainResult:
    """Train a classifier on ``data_dir/train`` and write a model directory to ``out_dir``.

    Args:
        data_dir: a folder with ``train/`` and ``validation/``, one sub-folder per class.
        out_dir: the model directory to write (created; existing files of the same names are
            replaced).
        image_size: side of the square the images are resized to; default: the training
            images' median shorter side, kept within 32 to 224.
        epochs: training epochs; default 30 for ``efficientnet-lite0`` (head only), 15 for
            ``small-cnn``.
        arch: ``efficientnet-lite0`` (frozen ImageNet backbone, trained head) or ``small-cnn``.
        seed: seed of the weight initialization and the batch order.
        on_epoch: called with each epoch's :class:`EpochStats`.
        on_stage: called as ``on_stage(stage, done, total)`` while images are read
            (``reading``), backbone features computed (``features``), the network trained
            (``training``) and exported (``exporting``).

    Raises:
        InvalidInputError: an unknown architecture, bad sizes, or a data folder of the wrong
            layout (the message names the folder or file).
    """
    if arch not in archs.ARCHITECTURES:
        raise InvalidInputError(
            f"unknown architecture {arch!r}; choose {' or '.join(archs.ARCHITECTURES)}"
        )
    n_epochs = DEFAULT_EPOCHS[arch] if epochs is None else epochs
    if n_epochs < 1:
        raise InvalidInputError(f"epochs must be at least 1, not {n_epochs}")
    stage = on_stage or (lambda *_: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    stage("reading", 0, 1)
    size = image_size or typical_size(data_dir)
    data = load_image_folder(data_dir, size)
    timings["reading"] = time.perf_counter() - started

    lr = 3e-3 if arch == archs.EFFICIENTNET_LITE0 else 5e-3
    settings = FitSettings(epochs=n_epochs, learning_rate=lr, seed=seed)
    t = time.perf_counter()
    if arch == archs.EFFICIENTNET_LITE0:
        spec = archs.efficientnet_input(size)
        module, history = _fit_frozen_backbone(data, spec, settings, stage, on_epoch)
    else:
        spec = archs.small_cnn_input(size)
        module, history = _fit_small_cnn(data, spec, settings, stage, on_epoch)
    timings["training"] = time.perf_counter() - t

    stage("exporting", 0, 1)
    t = time.perf_counter()
    model_dir = Path(out_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    archs.export_onnx(module, size, model_dir / MODEL_FILE)
    metadata = ModelMetadata(
        labels=data.classes,
        input=spec,
        output="logits",
        problem_type="binary" if len(data.classes) == 2 else "multiclass",
        name=model_dir.resolve().name,
        extra={"artifact": MODEL_FILE, "architecture": arch},
    )
    metadata.write(model_dir / METADATA_FILE)
    accuracy, matrix = _evaluate_export(model_dir, data)
    timings["export"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    metrics: dict[str, Any] = {
        "architecture": arch,
        "image_size": size,
        "epochs": n_epochs,
        "seed": seed,
        "labels": data.classes,
        "train_images": len(data.train),
        "validation_images": len(data.validation),
        "validation_accuracy": accuracy,
        "train_accuracy": history[-1].train_accuracy,
        "confusion_matrix": matrix.tolist(),
        "history": [asdict(h) for h in history],
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    write_metrics(model_dir / METRICS_FILE, metrics)
    plot_confusion(
        model_dir / CONFUSION_FILE,
        matrix,
        data.classes,
        f"{metadata.name}: validation accuracy {accuracy:.1%}",
    )
    return TrainResult(model_dir, metrics, module, metadata)
