"""The figure ``show()`` draws: the image, the positive and the negative pane side by side.

One implementation for the library's :class:`~limner.explain.Explanation` and the client's
explanation handle, so both look and behave the same in a notebook and in a script.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

#: A pane given as an RGB array, a PIL image or PNG bytes.
PaneInput = np.ndarray | Image.Image | bytes


def show_panes(
    image: PaneInput,
    positive: PaneInput,
    negative: PaneInput,
    *,
    label: str,
    probability: float,
    method: str,
    figsize: tuple[float, float] = (12, 4.4),
    notes: Sequence[str] = (),
    saliency: PaneInput | None = None,
) -> Any:
    """Plot the three panes in a row (matplotlib), and a gradient method's ``saliency`` pane
    after them when given; return the figure. ``notes`` (the fit R², whether the ranking
    settled, warnings: see ``caption_lines``) go under them.

    In a notebook the figure shows exactly once: as the cell's value, or through
    ``display(fig)`` (in a loop). Elsewhere ``plt.show()`` opens it.
    """
    import matplotlib.pyplot as plt

    panes = [("image", image), (f"{label}: positive", positive), ("negative", negative)]
    if saliency is not None:
        panes.append(("saliency (pixels)", saliency))
        figsize = (figsize[0] * 4 / 3, figsize[1])
    pictures = [_rgb(pane) for _, pane in panes]
    figsize = _fitted(figsize, pictures[0].size, len(panes), len(notes))
    # constrained layout keeps the title, the pane titles and the notes apart at any aspect
    fig, axes = plt.subplots(1, len(panes), figsize=figsize, layout="constrained")
    for ax, (title, _), picture in zip(axes, panes, pictures, strict=True):
        ax.imshow(picture, interpolation="nearest" if max(picture.size) < 64 else "antialiased")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{label} ({probability:.1%}), {method}")
    if notes:
        fig.supxlabel("\n".join(notes), fontsize=9, x=0.01, ha="left")
    if in_notebook():
        plt.close(fig)  # the notebook shows the returned figure; pyplot would show it again
    else:
        plt.show()
    return fig


def _fitted(
    figsize: tuple[float, float], image_size: tuple[int, int], columns: int, notes: int
) -> tuple[float, float]:
    """``figsize`` with a height that fits panes of the image's aspect (a tall photo gets a
    tall figure rather than panes squeezed under the titles)."""
    width, _ = figsize
    w, h = image_size
    pane_height = width / columns * (h / max(w, 1))
    return width, max(figsize[1], min(3 * width, pane_height + 1.0 + 0.2 * notes))


def caption_lines(entry: dict[str, Any]) -> list[str]:
    """Fit R², whether the top regions settled, and each warning of one RESULT class entry.

    ``settled`` null (a deterministic method: no sampling, so no interval and nothing to
    settle) is said as such, never as settled."""
    head = f"fit R² {float(entry.get('fit_r2', 0.0)):.2f}"
    settled = entry.get("settled")
    if settled is None:
        head += " · deterministic method: no sampling uncertainty to settle"
    else:
        head += " · top regions settled" if settled else " · top regions NOT settled"
    return [head, *(f"warning: {w}" for w in entry.get("warnings") or [])]


def _rgb(pane: PaneInput) -> Image.Image:
    if isinstance(pane, bytes):
        return Image.open(io.BytesIO(pane)).convert("RGB")
    if isinstance(pane, Image.Image):
        return pane.convert("RGB")
    return Image.fromarray(np.asarray(pane, dtype=np.uint8))


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel."""
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
