"""The epoch loop shared by every architecture: mini-batch AdamW on cross-entropy.

It trains any ``torch.nn.Module`` on tensors (precomputed features for a frozen backbone,
preprocessed images for a network trained from scratch) and reports train and validation
accuracy after each epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class EpochStats:
    """Loss and accuracy after one epoch (train figures are averaged over the epoch's batches)."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    seconds: float


@dataclass(frozen=True)
class FitSettings:
    """Optimizer settings of :func:`fit`."""

    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    seed: int = 0


def evaluate(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``module`` on ``(x, y)``, in eval mode."""
    module.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            logits = module(x[start : start + batch_size])
            target = y[start : start + batch_size]
            loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    n = max(1, len(y))
    return loss_sum / n, correct / n


def fit(
    module: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    settings: FitSettings,
    *,
    augment: Augment | None = None,
    on_epoch: Callable[[EpochStats], Any] | None = None,
) -> list[EpochStats]:
    """Train ``module`` (its trainable parameters) and return the per-epoch statistics."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps = settings.epochs * -(-len(train[1]) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=max(1, steps)
    )
    x, y = train
    history: list[EpochStats] = []
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        module.train()
        order = torch.randperm(len(y), generator=generator)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), settings.batch_size):
            index = order[start : start + settings.batch_size]
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb, generator)
            logits = module(xb)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(yb)
            correct += int((logits.detach().argmax(dim=1) == yb).sum())
        val_loss, val_acc = evaluate(module, *validation)
        stats = EpochStats(
            epoch=epoch,
            epochs=settings.epochs,
            train_loss=loss_sum / len(y),
            train_accuracy=correct / len(y),
            validation_loss=val_loss,
            validation_accuracy=val_acc,
            seconds=time.perf_counter() - started,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    module.eval()
    return history
