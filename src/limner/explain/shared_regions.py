"""A region map as bytes, so that several explanations of one image can share one segmentation.

The map is kept at its working resolution (the longest side at most
:data:`~limner.explain.segmentation.WORKING_MAX_SIDE`), with the original size and the
algorithm, in a compressed ``.npz`` (no pickles: it is read with ``allow_pickle=False``).
"""

from __future__ import annotations

import io

import numpy as np

from limner.errors import InvalidInputError
from limner.explain.segmentation import RegionMap


def dump_regions(regions: RegionMap) -> bytes:
    """``regions`` as compressed ``.npz`` bytes."""
    labels = regions.labels
    dtype = np.uint16 if regions.count <= np.iinfo(np.uint16).max + 1 else np.int32
    out = io.BytesIO()
    np.savez_compressed(
        out,
        labels=labels.astype(dtype),
        original_size=np.asarray(regions.original_size, dtype=np.int64),
        algorithm=np.asarray(regions.algorithm),
    )
    return out.getvalue()


def load_regions(data: bytes) -> RegionMap:
    """The region map that :func:`dump_regions` wrote (422 for anything else)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            labels = np.asarray(z["labels"]).astype(np.intp)
            width, height = (int(v) for v in z["original_size"])
            algorithm = str(z["algorithm"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"the shared region map cannot be read ({exc})") from None
    if labels.ndim != 2 or labels.size == 0 or labels.min() < 0 or width < 1 or height < 1:
        raise InvalidInputError("the shared region map is not a label image")
    if len(np.unique(labels)) != int(labels.max()) + 1:
        raise InvalidInputError("the shared region map's ids are not 0..M-1")
    return RegionMap(labels=labels, original_size=(width, height), algorithm=algorithm)
