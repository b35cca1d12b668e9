"""The RESULT of an explanation: region weights, faithfulness, and the rendered panes."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from limner.errors import InvalidInputError
from limner.explain import panes
from limner.explain.metrics import Faithfulness, ranking
from limner.explain.panes import OriginalSize, Painter, PaneSource
from limner.explain.segmentation import RegionMap
from limner.imaging.decode import DEFAULT_MAX_PIXELS
from limner.imaging.figure import caption_lines
from limner.imaging.saliency import saliency_pane, saturation, upsample
from limner.imaging.transform import fit_within
from limner.imaging.views import ViewSettings, clip_bounds, outline_width, view_rows

#: Regions whose |weight| is below this fraction of the largest count as neither side.
NEUTRAL_FRACTION = 0.005
#: The largest attribution map ``attribution_map`` draws (the largest photo limner decodes).
MAX_MAP_PIXELS = DEFAULT_MAX_PIXELS
#: A view's clip percentiles are read from the attribution map at this longest side at most.
VIEW_SAMPLE_SIDE = 1024
#: The pane kind (and file name suffix) of a Vertex-style view.
VIEW = "view"

ImageRefs = Callable[[int, str], Any]


@dataclass
class ClassExplanation:
    """The explanation of one class: additive region weights and how faithful they are."""

    label: str
    class_index: int
    probability: float
    intercept: float
    fit_r2: float
    weights: np.ndarray
    used_features: int
    #: None: the curves were not computed (``curves=False``)
    faithfulness: Faithfulness | None
    #: standard error and (lower, upper) interval of each weight, at the RESULT's confidence
    #: (empty for a deterministic method, whose weights have no sampling error)
    stderr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    interval: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    #: whether the top regions' order and signs are settled at that confidence; None: not
    #: applicable, the method is deterministic (nothing was sampled, so nothing can settle)
    settled: bool | None = None
    #: adjacent top regions (a, b) whose order is not settled but whose absolute weights are
    #: equal within the RESULT's tie tolerance (they count as settled, as a tie)
    ties: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def order(self) -> np.ndarray:
        """Region ids by weight, highest first."""
        return ranking(self.weights)

    def _threshold(self) -> float:
        return float(np.abs(self.weights).max(initial=0.0)) * NEUTRAL_FRACTION

    @property
    def positive_regions(self) -> list[int]:
        """Regions that pushed the class up, strongest first."""
        t = self._threshold()
        return [int(i) for i in self.order if self.weights[i] > t]

    @property
    def negative_regions(self) -> list[int]:
        """Regions that pushed the class down, strongest first."""
        t = self._threshold()
        return [int(i) for i in self.order[::-1] if self.weights[i] < -t]


#: Every pane kind and how its painter is made from a class's explanation and the explanation
#: (``regions``: every region's outline and id, the same for every class).
PAINTERS: dict[str, Callable[[ClassExplanation, RegionMap], Painter]] = {
    "positive": lambda c, _: panes.highlight_painter(c.positive_regions),
    "negative": lambda c, _: panes.highlight_painter(c.negative_regions),
    "heatmap": lambda c, _: panes.heatmap_painter(c.weights),
    "regions": lambda _, regions: panes.outlines_painter(regions.boxes_and_areas[0]),
}
PANES = tuple(PAINTERS)
#: The region label map as a pane: lossless 16-bit grayscale PNG, pixel value = region id
#: (data for other tools, not a picture; every explanation has it).
LABELS = "labels"
#: Panes that are the same image for every explained class: drawn once per explanation.
SHARED_PANES = frozenset({"regions", LABELS})
#: The pixel-level pane a gradient method adds.
SALIENCY = "saliency"


def saliency_painter(values: np.ndarray) -> Painter:
    """Draws a gradient method's pixel attribution (at the model's size) strip by strip, upsampled
    once to the original size on the first strip."""
    cache: dict[str, Any] = {}

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        if not cache:
            cache["v"] = upsample(values, source.width, source.height)
            cache["scale"] = saturation(cache["v"])
        return saliency_pane(source.image[top:bottom], cache["v"][top:bottom], cache["scale"])

    return paint


def _notes(c: ClassExplanation) -> list[str]:
    return caption_lines({"fit_r2": c.fit_r2, "settled": c.settled, "warnings": c.warnings})


@dataclass
class Explanation(OriginalSize):
    """An explanation of one image for one or more classes (``to_dict()`` is the RESULT)."""

    image: np.ndarray
    regions: RegionMap
    model: str
    method: str
    seed: int
    baseline: str
    samples: int
    model_evaluations: int
    seconds: float
    predictions: list[dict[str, Any]]
    classes: list[ClassExplanation]
    confidence: float = 0.9
    #: practical-equivalence tolerance δ of ``settled`` (a share of the largest |weight|)
    tie_tolerance: float = 0.0
    #: why sampling stopped: ``settled``, ``max_samples``, ``budget`` (a fixed budget) or ``exact``
    stop_reason: str = "budget"
    #: the adaptive budget (None when ``samples`` was a fixed budget)
    max_samples: int | None = None
    #: Gradient methods: the pixel attribution of each class at the model's size,
    #: Integrated Gradients' relative completeness gap per class and its steps, Grad-CAM's layer.
    saliency: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    completeness: dict[int, float] = field(default_factory=dict)
    steps: int | None = None
    layer: str | None = None
    #: Method ``amortized``: its explainer's held-out error and the check on this image (and
    #: ``fallback``, the method that explained it instead when the check failed).
    amortized: dict[str, Any] | None = None

    @property
    def explained_classes(self) -> list[int]:
        """Class indices explained, in the order of ``explanations``."""
        return [c.class_index for c in self.classes]

    @property
    def labels_map(self) -> np.ndarray:
        """Region id of every pixel, at the original size (built on each call, not kept)."""
        return self.regions.original

    @property
    def pane_kinds(self) -> tuple[str, ...]:
        """The panes this explanation has: ``PANES``, ``saliency`` for gradient methods, and
        ``labels`` (the region label map)."""
        return (*PANES, SALIENCY, LABELS) if self.saliency else (*PANES, LABELS)

    def attribution_map(
        self, height: int | None = None, width: int | None = None, *, class_index: int | None = None
    ) -> np.ndarray:
        """The attribution of one class at every pixel, float32 ``(height, width)`` (default:
        the original size; any size, such as the model's input size, is drawn directly).

        Region methods paint each region's weight over its pixels (the region map sampled to
        that size, nearest neighbour); the gradient methods resample their pixel map (taken at
        the model's input size) bilinearly. Positive values pushed the class up. ``class_index``
        defaults to the first explained class.
        """
        h = self.height if height is None else int(height)
        w = self.width if width is None else int(width)
        if h < 1 or w < 1 or h * w > MAX_MAP_PIXELS:
            raise InvalidInputError(
                f"an attribution map must be 1 to {MAX_MAP_PIXELS} pixels, not {w}×{h}"
            )
        ci = self.classes[0].class_index if class_index is None else int(class_index)
        c = self.for_class(ci)
        if ci in self.saliency:
            return upsample(self.saliency[ci], w, h).astype(np.float32, copy=False)
        weights = np.asarray(c.weights, dtype=np.float32)
        return np.take(weights, self.regions.at_size(w, h))

    def settings(self) -> dict[str, Any]:
        """How this explanation was made (enough to reproduce it)."""
        return {
            "method": self.method,
            "samples": self.samples if self.max_samples is None else None,
            "max_samples": self.max_samples,
            "confidence": self.confidence,
            "seed": self.seed,
            "segmentation": self.regions.algorithm,
            "segments": self.regions.count,
            "baseline": self.baseline,
            **({"steps": self.steps} if self.steps is not None else {}),
            **({"layer": self.layer} if self.layer is not None else {}),
        }

    def pane_keys(self) -> list[tuple[tuple[int, str], tuple[int, str]]]:
        """Every ``(class_index, kind)`` pane with the pane it is drawn as: itself, or for a pane
        that is the same for every class (``SHARED_PANES``), that pane of the first class."""
        first = self.explained_classes[0]
        return [
            ((ci, kind), (first if kind in SHARED_PANES else ci, kind))
            for ci in self.explained_classes
            for kind in self.pane_kinds
        ]

    def for_class(self, class_index: int) -> ClassExplanation:
        """The explanation of one class index."""
        for c in self.classes:
            if c.class_index == class_index:
                return c
        raise KeyError(
            f"class {class_index} was not explained (explained: {self.explained_classes})"
        )

    def painter(self, class_index: int, kind: str) -> Painter:
        """What draws the ``positive``, ``negative``, ``heatmap`` or ``regions`` pane of a class
        (or a gradient method's ``saliency`` pane),
        strip by strip (see :mod:`limner.explain.panes`)."""
        if kind == SALIENCY and self.saliency:
            return saliency_painter(self.saliency[class_index])
        if kind not in PAINTERS:
            raise ValueError(f"pane must be one of {', '.join(self.pane_kinds)}")
        return PAINTERS[kind](self.for_class(class_index), self.regions)

    def view_settings(
        self, settings: ViewSettings | Mapping[str, Any] | str | None
    ) -> ViewSettings:
        """``settings`` as :class:`ViewSettings`: given whole, or a dict or ``name=value,...``
        text whose missing fields are this method's default view (``None``: the default)."""
        if isinstance(settings, ViewSettings):
            return settings
        base = ViewSettings.default_for(self.method)
        if isinstance(settings, str):
            return ViewSettings.parse(settings, base)
        return ViewSettings.from_dict(settings, base)

    def view_painter(
        self, class_index: int, settings: ViewSettings | Mapping[str, Any] | str | None = None
    ) -> Painter:
        """What draws a Vertex-style view of a class's attribution map strip by strip (see
        :mod:`limner.imaging.views`): the clip percentiles are read once from the map at a
        longest side of at most ``VIEW_SAMPLE_SIDE``; each strip reads the rows around it that
        its outlines depend on."""
        view = self.view_settings(settings)
        c = self.for_class(class_index)
        w, h = fit_within(self.width, self.height, VIEW_SAMPLE_SIDE)
        bounds = clip_bounds(self.attribution_map(h, w, class_index=class_index), view)
        width = outline_width(self.width, self.height)
        weights = np.asarray(c.weights, dtype=np.float32)
        pixels = self.saliency.get(class_index)
        cache: dict[str, np.ndarray] = {}

        def values(source: PaneSource, top: int, bottom: int) -> np.ndarray:
            if pixels is None:
                return np.take(weights, source.labels(top, bottom))
            if not cache:  # as the saliency pane: upsampled once, on the first strip
                cache["v"] = upsample(pixels, source.width, source.height)
            return cache["v"][top:bottom]

        def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
            above, below = min(top, width), min(source.height - bottom, width)
            return view_rows(
                source.image[top - above : bottom + below],
                values(source, top - above, bottom + below),
                view,
                bounds=bounds,
                outline=width,
                margin=(above, below),
            )

        return paint

    def view(
        self, class_index: int, settings: ViewSettings | Mapping[str, Any] | str | None = None
    ) -> np.ndarray:
        """A Vertex-style view of a class's attribution (type, polarity, clip percentiles,
        colour map, overlay: :class:`~limner.imaging.views.ViewSettings`, a dict of its fields
        or ``"type=PIXELS,polarity=both"``; missing fields are the method's default view), RGB
        uint8 at the original size (drawn on each call, not kept)."""
        return panes.render(self.pane_source, self.view_painter(class_index, settings))

    def view_png(
        self, class_index: int, settings: ViewSettings | Mapping[str, Any] | str | None = None
    ) -> bytes:
        """A view (see :meth:`view`) encoded as PNG, drawn and encoded strip by strip."""
        return panes.encode(self.pane_source, self.view_painter(class_index, settings))

    def save_view(
        self,
        class_index: int,
        settings: ViewSettings | Mapping[str, Any] | str | None = None,
        path: str | Path | None = None,
        *,
        directory: str | Path = ".",
    ) -> Path:
        """Write a view (see :meth:`view`) as PNG, strip by strip, to ``path`` (default:
        ``{class_index}-{label}-view.png`` in ``directory``); return the path."""
        out = Path(directory) / self.file_name(class_index, VIEW) if path is None else Path(path)
        painter = self.view_painter(class_index, settings)
        with out.open("wb") as f:
            panes.write(self.pane_source, painter, f)
        return out

    @property
    def pane_source(self) -> PaneSource:
        """The photo and region map every pane is drawn from."""
        return PaneSource(self.image, self.regions)

    def pane(self, class_index: int, kind: str) -> np.ndarray:
        """A pane, RGB uint8 at the original size (drawn on each call, not kept); the
        ``labels`` pane is the region id of every pixel, uint16 ``(H, W)``."""
        if kind == LABELS:
            self.for_class(class_index)
            return panes.render_labels(self.pane_source)
        return panes.render(self.pane_source, self.painter(class_index, kind))

    def pane_image(self, class_index: int, kind: str) -> Image.Image:
        """A pane as a PIL image (the REF of the Python API; ``labels``: mode ``I;16``)."""
        return Image.fromarray(self.pane(class_index, kind))

    def png(self, class_index: int, kind: str) -> bytes:
        """A pane encoded as PNG, drawn and encoded strip by strip (``labels``: 16-bit
        grayscale, lossless)."""
        if kind == LABELS:
            self.for_class(class_index)
            return panes.encode_labels(self.pane_source)
        return panes.encode(self.pane_source, self.painter(class_index, kind))

    def write_png(self, class_index: int, kind: str, file: BinaryIO) -> None:
        """Write a pane as PNG to an open binary file, strip by strip."""
        if kind == LABELS:
            self.for_class(class_index)
            panes.write_labels(self.pane_source, file)
            return
        panes.write(self.pane_source, self.painter(class_index, kind), file)

    def file_name(self, class_index: int, kind: str) -> str:
        """File name ``save()`` gives a pane: ``{class_index}-{label}-{kind}.png``."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.for_class(class_index).label).strip("-").lower()
        return f"{class_index}-{slug or 'class'}-{kind}.png"

    def show(
        self, class_index: int | None = None, *, figsize: tuple[float, float] = (12, 4.4)
    ) -> Any:
        """Plot the image, the positive and the negative pane side by side, and the saliency pane
        of a gradient method (matplotlib); return the figure (the same as the client's ``show``)."""
        from limner.imaging.figure import show_panes

        c = self.classes[0] if class_index is None else self.for_class(class_index)
        return show_panes(
            self.image,
            self.pane(c.class_index, "positive"),
            self.pane(c.class_index, "negative"),
            label=c.label,
            probability=c.probability,
            method=self.method,
            figsize=figsize,
            notes=_notes(c),
            saliency=self.pane(c.class_index, SALIENCY) if self.saliency else None,
        )

    def __repr__(self) -> str:
        top = ", ".join(f"{c.label} {c.probability:.1%}" for c in self.classes)
        return (
            f"<Explanation {self.method} of a {self.width}×{self.height} image by {self.model}: "
            f"{top}; {self.regions.count} regions, {self.seconds:.2f} s>"
        )

    def to_dict(self, image_refs: ImageRefs | None = None) -> dict[str, Any]:
        """The RESULT (every field is described in docs/result.md). ``image_refs(class_index,
        kind)`` gives each image reference (default: the file names written by ``save``)."""
        refs = image_refs or self.file_name
        boxes, areas = self.regions.boxes_and_areas
        out = []
        for c in self.classes:
            total = float(np.abs(c.weights).sum()) or 1.0
            regions = [
                {
                    "id": int(i),
                    "weight": float(c.weights[i]),
                    "interval": [float(v) for v in c.interval[i]] if len(c.interval) else None,
                    "stderr": float(c.stderr[i]) if len(c.stderr) else None,
                    "share": round(100.0 * abs(float(c.weights[i])) / total, 3),
                    "bbox": [int(v) for v in boxes[i]],
                    "area": int(areas[i]),
                }
                for i in c.order
            ]
            f = c.faithfulness
            out.append(
                {
                    "label": c.label,
                    "class_index": c.class_index,
                    "probability": c.probability,
                    "intercept": c.intercept,
                    "fit_r2": c.fit_r2,
                    "settled": c.settled,
                    "ties": [[int(a), int(b)] for a, b in c.ties],
                    "warnings": list(c.warnings),
                    "total_features": len(c.weights),
                    "used_features": c.used_features,
                    "regions": regions,
                    "positive_regions": c.positive_regions,
                    "negative_regions": c.negative_regions,
                    "deletion_auc": f.deletion_auc if f else None,
                    "insertion_auc": f.insertion_auc if f else None,
                    "random_deletion_auc": f.random_deletion_auc if f else None,
                    "random_insertion_auc": f.random_insertion_auc if f else None,
                    "sufficient_regions": f.sufficient if f else None,
                    "necessary_regions": f.necessary if f else None,
                    "images": {k: refs(c.class_index, k) for k in self.pane_kinds},
                }
            )
            if c.class_index in self.completeness:
                out[-1]["completeness_gap"] = round(self.completeness[c.class_index], 6)
        return {
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "method": self.method,
            "seed": self.seed,
            "segmentation": {
                "algorithm": self.regions.algorithm,
                "count": self.regions.count,
                "baseline": self.baseline,
            },
            "samples": self.samples,
            "max_samples": self.max_samples,
            "stop_reason": self.stop_reason,
            "confidence": self.confidence,
            "tie_tolerance": self.tie_tolerance,
            "model_evaluations": self.model_evaluations,
            "seconds": round(self.seconds, 4),
            "predictions": self.predictions,
            "explanations": out,
            **({"steps": self.steps} if self.steps is not None else {}),
            **({"layer": self.layer} if self.layer is not None else {}),
            **({"amortized": self.amortized} if self.amortized is not None else {}),
        }

    def save(self, directory: str | Path) -> Path:
        """Write every pane as PNG and the RESULT as ``result.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)

        def write(key: tuple[int, str]) -> None:
            with (d / self.file_name(*key)).open("wb") as f:
                self.write_png(*key, f)

        # drawing and PNG encoding release the GIL: large photos gain from a few threads, and
        # each thread holds only the strip it is on; a pane shared by the classes is copied
        pairs = self.pane_keys()
        drawn = [key for key, source in pairs if key == source]
        with ThreadPoolExecutor(max_workers=min(len(drawn), os.cpu_count() or 1, 4)) as pool:
            list(pool.map(write, drawn))
        for key, source in pairs:
            if key != source:
                shutil.copyfile(d / self.file_name(*source), d / self.file_name(*key))
        (d / "result.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return d
