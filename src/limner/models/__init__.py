"""Model protocol and adapters (ONNX Runtime, TorchScript, Keras 3, remote, built-in zoo)."""

from limner.models.base import CallableModel, Model
from limner.models.loader import load_model
from limner.models.metadata import METADATA_FILE, InputSpec, ModelMetadata
from limner.models.zoo import BUILTIN_MODELS, BuiltinTorchModule, builtin_torch_module

__all__ = [
    "BUILTIN_MODELS",
    "METADATA_FILE",
    "BuiltinTorchModule",
    "CallableModel",
    "InputSpec",
    "Model",
    "ModelMetadata",
    "builtin_torch_module",
    "load_model",
]
