"""PyTorch adapters: TorchScript files and in-memory modules (the GPU path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from limner.errors import ModelError
from limner.models.base import Model
from limner.models.gradients import TorchForward
from limner.models.metadata import (
    ModelMetadata,
    complete,
    merge_hints,
    plain_text,
    without_folder,
)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if device not in ("auto", "cpu", "cuda"):
        from limner.errors import InvalidInputError

        raise InvalidInputError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda":
        _require_cuda()
    if device != "auto":
        return device
    # importing torch takes a second or two; only ask it when an NVIDIA driver is present
    if not (os.path.exists("/proc/driver/nvidia") or shutil.which("nvidia-smi")):
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


def _require_cuda() -> None:
    """Raise limner's error, naming what is available, when PyTorch sees no CUDA GPU."""
    from limner.errors import InvalidInputError

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise InvalidInputError("device 'cuda' needs PyTorch; available here: cpu") from None
    if torch.cuda.is_available():
        return
    why = (
        f"this PyTorch ({torch.__version__}) is built without CUDA"
        if torch.version.cuda is None
        else "PyTorch sees no CUDA GPU"
    )
    raise InvalidInputError(
        f"device 'cuda' is not available: {why}; available here: cpu (or auto, which picks it)"
    )


class TorchModel(Model):
    """A ``torch.nn.Module`` (or TorchScript module) run by PyTorch.

    On CUDA the module runs in bfloat16 with channels-last memory, the fast path on recent GPUs.
    """

    preferred_batch_size = 16

    def __init__(
        self, module: Any, metadata: ModelMetadata, *, device: str = "cpu", name: str | None = None
    ) -> None:
        super().__init__(metadata, name=name)
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self._module = module.eval().to(self.device)
        self._autocast = self.device.type == "cuda"
        if self._autocast:
            self._module = self._module.to(memory_format=torch.channels_last)
            self.preferred_batch_size = 256

    def _forward(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        t = torch.from_numpy(x).to(self.device, non_blocking=True)
        if self._autocast and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        try:
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast),
            ):
                out = self._module(t)
        except Exception as exc:
            raise ModelError(
                f"{self.name}: the PyTorch model failed ({plain_text(str(exc))})"
            ) from exc
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu().numpy()

    def torch_forward(self) -> TorchForward:
        """The module in float32 on its device (gradients need no autocast)."""
        from limner.models.gradients import module_forward

        return module_forward(self._module, self.metadata, self.device)


def load_torchscript(
    path: str | Path,
    metadata: ModelMetadata | None,
    *,
    device: str = "cpu",
    given: dict[str, Any] | None = None,
    name: str | None = None,
) -> TorchModel:
    """Load a TorchScript classifier saved with ``torch.jit.save``.

    ``metadata`` is used as it is; without it, ``given`` (metadata fields, any subset) over
    what a TorchScript file tells: its layout (PyTorch's, NCHW). A saved module keeps no input
    size, so the input width and height (and the labels) must be given; a wrong size or
    output count shows when the deployment scores its synthetic images.
    """
    import torch

    p = Path(path)
    try:
        module = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        problem = plain_text(without_folder(str(exc), p.parent))
        raise ModelError(f"{p.name}: not a loadable TorchScript model ({problem})") from exc
    if metadata is None:
        told: dict[str, Any] = {"name": name or p.stem, "input": {"layout": "NCHW"}}
        metadata = complete(merge_hints(told, given or {}), what=p.name)
    return TorchModel(module, metadata, device=device)
