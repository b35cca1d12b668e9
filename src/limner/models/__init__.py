"""Model protocol and adapters (ONNX Runtime, TorchScript, Keras 3, remote, built-in zoo)."""

from limner.models.base import CallableModel, Model
from limner.models.loader import load_model
from limner.models.metadata import METADATA_FILE, InputSpec, ModelMetadata

__all__ = ["METADATA_FILE", "CallableModel", "InputSpec", "Model", "ModelMetadata", "load_model"]
