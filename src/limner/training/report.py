"""What a training run leaves besides the model: ``metrics.json`` and a confusion-matrix PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrix.png"


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Write the run's metrics as indented JSON."""
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")


def plot_confusion(path: str | Path, matrix: np.ndarray, labels: list[str], title: str) -> None:
    """Draw the confusion matrix (rows: true class, columns: predicted) as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    n = len(labels)
    side = min(12.0, 2.5 + 0.6 * n)
    fig = Figure(figsize=(side, side * 0.9), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                colour = "white" if top and matrix[i, j] > top / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(str(path))
