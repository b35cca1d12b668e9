"""A trained explainer: its network and its ``limner-explainer.json``, saved as data.

The folder holds ``explainer.safetensors`` (the trained weights and where the training images'
features lie; tensors only: loading it runs no code, unlike a pickle; the frozen backbone's
weights come from its package) and ``limner-explainer.json``: the model it belongs to (labels,
input size, the SHA-256 of its artifact where it has one), the backbone, the baseline it was
trained with, the network's width, how many images it learned from, its training history and
the held-out calibration (:class:`limner.amortized.calibration.Calibration`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from limner.amortized.calibration import Calibration, calibrate
from limner.amortized.games import SEGMENTATIONS, Games, play
from limner.amortized.network import BACKBONE, DEFAULT_WIDTH, ExplainerNet, head_session
from limner.amortized.training import StageProgress, fit, pixels, pixels_array, region_values
from limner.errors import InvalidInputError
from limner.models.base import Model

WEIGHTS = "explainer.safetensors"
DESCRIPTION = "limner-explainer.json"
#: The description's format: 2 names its backbone; 1 (no backbone) still loads.
FORMAT = 2
FORMATS = (1, 2)

log = logging.getLogger(__name__)


@dataclass
class AmortizedExplainer:
    """An explainer network and its description (``meta``: the JSON's fields)."""

    net: ExplainerNet
    meta: dict[str, Any]
    #: The head on ONNX Runtime for :meth:`read` (made at the first read; False: its export
    #: failed; see :meth:`head`).
    _head: Any = field(default=None, init=False, repr=False, compare=False)
    _head_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    #: The training features' mean and precision as NumPy arrays, for :meth:`read`.
    _familiar: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def calibration(self) -> Calibration:
        """The held-out calibration."""
        return Calibration(**self.meta["calibration"])

    @property
    def baseline(self) -> str:
        """The baseline the explainer learned its games with."""
        return str(self.meta["baseline"])

    def fits(self, model: Model, sha256: str | None = None) -> None:
        """A one-line error unless the explainer was trained for ``model`` (labels, input size
        and, where both are known, the artifact's SHA-256)."""
        mine = self.meta["model"]
        if list(mine["labels"]) != list(model.labels) or tuple(mine["input_size"]) != tuple(
            model.input_size
        ):
            raise InvalidInputError(
                f"this explainer was trained for another model ({mine.get('name')}, labels "
                f"{', '.join(mine['labels'][:5])}, input {mine['input_size'][0]}×"
                f"{mine['input_size'][1]})"
            )
        if sha256 and mine.get("sha256") and sha256 != mine["sha256"]:
            raise InvalidInputError(
                "this explainer was trained for another version of the model (its artifact's "
                "SHA-256 differs): train it again"
            )

    def values(self, games: Games) -> tuple[np.ndarray, np.ndarray]:
        """The efficient region values ``(n, C, M)`` of the games' images and the raw maps'
        totals ``(n, C)``."""
        with torch.no_grad():
            maps = self.net(pixels(games.images, games.bases))
            phi = region_values(
                maps,
                torch.from_numpy(games.labels),
                torch.from_numpy(games.counts),
                torch.from_numpy(games.delta),
                games.z.shape[2],
            )
            return phi.double().numpy(), maps.sum(dim=(2, 3)).double().numpy()

    def distances(self, games: Games) -> np.ndarray:
        """Each of the games' images' distance from the training images' features."""
        with torch.no_grad():
            return self.net.distance(pixels(games.images, games.bases)).double().numpy()

    def read(
        self,
        image: np.ndarray,
        base: np.ndarray,
        labels: np.ndarray,
        count: int,
        delta: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """One image's efficient values ``(C, M)``, raw totals ``(C,)`` and distance from the
        training images' features (uint8 ``image``, its baseline ``base`` and ``labels`` at
        the model's input size), the backbone run once for all three.

        On the CPU the head runs on ONNX Runtime and the image's conversion and the distance
        in NumPy: PyTorch's threads, woken for them and left spinning, slowed the model's runs
        around the read, and the model's threads slowed them (docs/benchmarks.md, "The head's
        threads")."""
        with torch.no_grad():
            x = torch.from_numpy(pixels_array(image[None], base[None]))
            context = self.net.context(x)
            head = self.head() if context is not None and context.device.type == "cpu" else None
            if head is None or context is None:
                maps = self.net(x, context)
                distance = float(self.net.distance(x, context)[0])
            else:
                features = context.numpy()
                low = head.run(None, {"features": features.astype(np.float32, copy=False)})[0]
                maps = self.net.spread(torch.from_numpy(low), *x.shape[2:])
                distance = self._distance(features.mean(axis=(2, 3), dtype=np.float64)[0])
            phi = region_values(
                maps,
                torch.from_numpy(labels[None].astype(np.int64)),
                torch.tensor([count]),
                torch.from_numpy(np.asarray(delta, np.float32)[None]),
                count,
            )
        return phi[0].double().numpy(), maps.sum(dim=(2, 3))[0].double().numpy(), distance

    def _distance(self, features: np.ndarray) -> float:
        """:meth:`ExplainerNet.distance` of one image's backbone channel means, in NumPy (the
        training features' mean and precision converted once, with the head's session)."""
        if self._familiar is None:
            self._familiar = (
                self.net.get_buffer("familiar_mean").double().numpy(),
                self.net.get_buffer("familiar_precision").double().numpy(),
            )
        mean, precision = self._familiar
        d = features - mean
        return float(np.sqrt(max(np.einsum("i,ij,j->", d, precision, d), 0.0)))

    def head(self) -> Any:
        """The trained layers on ONNX Runtime, made from the network's weights at the first
        call (a backbone explainer's; None for the older backbone-less form, and where the
        export failed: :meth:`read` then runs the head on PyTorch). Train no further after:
        the session keeps the weights it was made with."""
        if self.net.backbone is None or self._head is False:
            return None
        if self._head is None:
            with self._head_lock:
                if self._head is None:
                    try:
                        self._head = head_session(self.net)
                    except Exception:  # the PyTorch head gives the same maps, slower
                        log.warning("the explainer's head could not run on ONNX Runtime; "
                                    "it runs on PyTorch", exc_info=True)  # fmt: skip
                        self._head = False
                        return None
        return self._head

    def weights(self) -> bytes:
        """The network's weights as safetensors bytes (tensors only)."""
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in self.net.state_dict().items()})

    def save(self, folder: str | Path) -> Path:
        """Write the weights and the description to ``folder``; return it."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / WEIGHTS).write_bytes(self.weights())
        (out / DESCRIPTION).write_text(json.dumps(self.meta, indent=2) + "\n")
        return out


def load_explainer(folder: str | Path) -> AmortizedExplainer:
    """An explainer folder (``explainer.safetensors`` and ``limner-explainer.json``); one-line
    errors for anything else (no pickles are read)."""
    path = Path(folder)
    if not (path / DESCRIPTION).is_file() or not (path / WEIGHTS).is_file():
        raise InvalidInputError(
            f"{path.name}: not an explainer folder (it needs {WEIGHTS} and {DESCRIPTION})"
        )
    try:
        meta = json.loads((path / DESCRIPTION).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path.name}/{DESCRIPTION}: not an explainer's ({exc})") from exc
    return explainer_from(meta, (path / WEIGHTS).read_bytes(), name=path.name)


def explainer_from(meta: Any, weights: bytes, *, name: str = "explainer") -> AmortizedExplainer:
    """An explainer from its description and its safetensors weights (bytes); one-line errors
    for anything else. Safetensors holds tensors only: reading it runs no code."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        classes = len(meta["model"]["labels"])
        width = int(meta["width"])
        Calibration(**meta["calibration"])
        if meta.get("format") not in FORMATS:
            raise ValueError(f"format {meta.get('format')!r}")
        net = ExplainerNet(classes, width, meta.get("backbone"))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{name}/{DESCRIPTION}: not an explainer's ({exc})") from exc
    try:
        net.load_state_dict(load(weights))
    except (SafetensorError, RuntimeError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{name}/{WEIGHTS}: not this explainer's weights") from exc
    return AmortizedExplainer(net.eval(), meta)


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a model's artifact: the file, or a folder's ``limner-model.json``
    artifact (None for built-in models and URLs)."""
    p = Path(path)
    if p.is_dir():
        from limner.models.loader import artifact_path
        from limner.models.metadata import read_metadata_dict

        try:
            p = artifact_path(p, read_metadata_dict(p / "limner-model.json"))
        except Exception:
            return None
    if not p.is_file():
        return None
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train_explainer(
    model: Model,
    images: Sequence[np.ndarray],
    *,
    model_sha256: str | None = None,
    baseline: str = "blur",
    pairs: int = 64,
    heldout: float = 0.2,
    epochs: int = 60,
    patience: int = 8,
    width: int = DEFAULT_WIDTH,
    reference_samples: int = 1024,
    calibration_images: int = 50,
    seed: int = 0,
    progress: StageProgress | None = None,
) -> AmortizedExplainer:
    """Train an explainer for ``model`` on ``images`` (uint8, any size: resized to the model's
    input): play the games, fit the network with a held-out share for early stopping, and
    calibrate it on (up to ``calibration_images`` of) the held-out images against KernelSHAP
    with ``reference_samples`` coalitions. ``progress(stage, done, total)`` for the stages
    ``games``, ``training``, ``calibrating``."""
    from limner.imaging.transform import resize

    if len(images) < 10:
        raise InvalidInputError(f"an explainer needs at least 10 images, not {len(images)}")
    if not 0.05 <= heldout <= 0.5:
        raise InvalidInputError("heldout must be between 0.05 and 0.5")
    started = time.perf_counter()
    w, h = model.input_size
    sized = [resize(np.asarray(im, np.uint8), w, h) for im in images]
    stage = progress or (lambda *_: None)
    games = play(
        model, sized, pairs=pairs, baseline=baseline, seed=seed,
        progress=lambda d, t: stage("games", d, t),
    )  # fmt: skip
    order = np.random.default_rng(seed).permutation(len(games))
    cut = max(2, round(heldout * len(games)))
    held, train = games.subset(order[:cut]), games.subset(order[cut:])
    net, report = fit(train, held, width=width, epochs=epochs, patience=patience, seed=seed,
                      progress=progress)  # fmt: skip
    with torch.no_grad():
        features = report.train_features
        if features is None:  # defensive: the contexts are missing (no backbone)
            features = torch.cat([
                net.features(pixels(train.images[s : s + 64], train.bases[s : s + 64]))
                for s in range(0, len(train), 64)
            ])  # fmt: skip
        net.familiarize(features)
    explainer = AmortizedExplainer(net, {})
    cal = calibrate(
        explainer.values, model, held.subset(np.arange(min(calibration_images, len(held)))),
        distances=explainer.distances,
        baseline=baseline, samples=reference_samples, seed=seed,
        progress=lambda d, t: stage("calibrating", d, t),
    )  # fmt: skip
    explainer.meta = {
        "format": FORMAT,
        "model": {
            "name": model.name,
            "labels": list(model.labels),
            "input_size": list(model.input_size),
            "sha256": model_sha256,
        },
        "baseline": baseline,
        "segmentations": [list(s) for s in SEGMENTATIONS],
        "backbone": BACKBONE,
        "width": width,
        "training_images": len(train),
        "heldout_images": len(held),
        "coalitions_per_image": 2 * pairs,
        "epochs": len(report.train_loss),
        "best_epoch": report.best_epoch,
        "train_loss": [round(v, 8) for v in report.train_loss],
        "heldout_loss": [round(v, 8) for v in report.heldout_loss],
        "seconds": round(time.perf_counter() - started, 2),
        "calibration": asdict(cal),
    }
    return explainer
