"""Training classifiers on a folder of images (``limner train``)."""

from limner.training.architectures import ARCHITECTURES
from limner.training.data import ImageFolderData, load_image_folder, scan_folder
from limner.training.loop import EpochStats
from limner.training.trainer import DEFAULT_EPOCHS, TrainResult, train

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_EPOCHS",
    "EpochStats",
    "ImageFolderData",
    "TrainResult",
    "load_image_folder",
    "scan_folder",
    "train",
]
