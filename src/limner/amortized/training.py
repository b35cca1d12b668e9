"""Training an explainer: FastSHAP's masked-model objective on a classifier's own games.

For a batch of images the network's maps are summed over each image's regions (φ̂, per
class), made efficient (the gap to f(image) − f(baseline) is shared equally by the regions, as
FastSHAP's additive normalization does), and fitted to the values of the image's coalitions:
the loss is the mean of (Σ_{i∈S} φ̂_i − v(S))² over coalitions and classes. With coalitions
drawn from the Shapley kernel this least-squares objective is minimized by the Shapley values
(Jethani et al., ICLR 2022), so the network learns them without ever seeing a per-image
estimate. The games are computed once (:func:`limner.amortized.games.play`) and every epoch
draws from them: the classifier's cost is paid once, the rest is the small network's.

A held-out share of the images stops training when its loss no longer improves
(``patience`` epochs) and keeps the best weights; then the held-out images calibrate the
explainer (:mod:`limner.amortized.calibration`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from limner.amortized.games import Games
from limner.amortized.network import BACKBONE, ExplainerNet

#: ``progress(stage, done, total)``.
StageProgress = Callable[[str, int, int], Any]


@dataclass
class FitReport:
    """How training went: each epoch's training and held-out loss, the best epoch, seconds."""

    train_loss: list[float] = field(default_factory=list)
    heldout_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    #: :meth:`ExplainerNet.features` of the training images, from the contexts training
    #: computed (the backbone's channel means, averaged from the half-precision contexts, on
    #: the CPU): no second backbone run for ``familiarize``
    train_features: torch.Tensor | None = None


def pixels(images: np.ndarray, bases: np.ndarray, device: Any = "cpu") -> torch.Tensor:
    """uint8 images and their baselines (N, H, W, 3) as the network's input (N, 6, H, W) in
    0..1."""
    x = torch.from_numpy(np.concatenate([images, bases], axis=3)).to(device)
    return x.permute(0, 3, 1, 2).float() / 255.0


def pixels_array(images: np.ndarray, bases: np.ndarray) -> np.ndarray:
    """:func:`pixels` made by NumPy, float32 (N, 6, H, W): for one image at explanation time,
    where waking PyTorch's threads costs more than the conversion."""
    x = np.concatenate([images, bases], axis=3).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32) * np.float32(1 / 255.0)


def region_values(
    maps: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, delta: torch.Tensor, size: int
) -> torch.Tensor:
    """Efficient region values ``(N, C, size)`` from maps ``(N, C, H, W)``: each region's sum,
    plus an equal share of what the regions lack of ``delta`` (N, C); regions past an image's
    ``counts`` stay 0."""
    n, c = maps.shape[:2]
    flat = labels.reshape(n, 1, -1).expand(n, c, -1).long()
    sums = torch.zeros(n, c, size, dtype=maps.dtype, device=maps.device)
    sums.scatter_add_(2, flat, maps.reshape(n, c, -1))
    present = (torch.arange(size, device=maps.device)[None] < counts[:, None]).to(maps.dtype)
    gap = (delta - sums.sum(dim=2)) / counts[:, None].to(maps.dtype)
    return (sums + gap[:, :, None] * present[:, None, :]) * present[:, None, :]


def contexts(net: ExplainerNet, games: Games, device: Any = "cpu") -> torch.Tensor | None:
    """:meth:`ExplainerNet.context` of every image of ``games``, computed once (the backbone is
    frozen, so every epoch would compute the same), kept in half precision (136 KB an image)."""
    parts = []
    for s in range(0, len(games), 64):
        part = net.context(pixels(games.images[s : s + 64], games.bases[s : s + 64], device))
        if part is None:
            return None
        parts.append(part.half())
    return torch.cat(parts)


def game_loss(
    net: ExplainerNet,
    games: Games,
    idx: np.ndarray,
    device: Any = "cpu",
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """The masked-model loss of images ``idx``: mean (Σ_{i∈S} φ̂_i − v(S))². ``context``:
    :func:`contexts` of all of ``games``, where computed."""
    size = games.z.shape[2]
    x = pixels(games.images[idx], games.bases[idx], device)
    given = None if context is None else context[torch.from_numpy(idx).to(context.device)].float()
    maps = net(x, given)
    phi = region_values(
        maps,
        torch.from_numpy(games.labels[idx]).to(device),
        torch.from_numpy(games.counts[idx]).to(device),
        torch.from_numpy(games.delta[idx]).to(device),
        size,
    )
    z = torch.from_numpy(games.z[idx]).to(device)  # (B, K, M)
    predicted = torch.einsum("bkm,bcm->bkc", z, phi)
    return ((predicted - torch.from_numpy(games.values[idx]).to(device)) ** 2).mean()


def fit(
    games: Games,
    heldout: Games,
    *,
    width: int,
    epochs: int = 60,
    patience: int = 8,
    batch_size: int = 32,
    learning_rate: float = 3e-4,
    weight_decay: float = 3e-2,
    seed: int = 0,
    device: Any = "cpu",
    progress: StageProgress | None = None,
) -> tuple[ExplainerNet, FitReport]:
    """Train an :class:`ExplainerNet` on ``games``, stopping early on ``heldout``'s loss."""
    import time

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ExplainerNet(games.values.shape[2], width, BACKBONE).to(device)
    train_context, held_context = contexts(net, games, device), contexts(net, heldout, device)
    opt = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    report = FitReport()
    best = float("inf")
    best_state: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(games))
        losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = game_loss(net, games, batch, device, train_context)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        net.eval()
        with torch.no_grad():
            held = [
                float(
                    game_loss(
                        net, heldout, np.arange(s, min(s + 64, len(heldout))), device, held_context
                    )
                )
                * min(64, len(heldout) - s)
                for s in range(0, len(heldout), 64)
            ]
        report.train_loss.append(float(np.mean(losses)))
        report.heldout_loss.append(sum(held) / len(heldout))
        if report.heldout_loss[-1] < best:
            best = report.heldout_loss[-1]
            report.best_epoch = epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if progress is not None:
            progress("training", epoch + 1, epochs)
        if epoch - report.best_epoch >= patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    if train_context is not None:
        report.train_features = train_context.float().mean(dim=(2, 3)).cpu()
    report.seconds = time.perf_counter() - started
    return net, report
