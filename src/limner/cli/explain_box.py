"""``limner explain-box IMAGE --detector MODEL``: explain one box of an object detector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from limner.cli.common import console
from limner.cli.model_options import (
    BaselineOption,
    LayerOption,
    SamplesOption,
    SeedOption,
    SegmentationOption,
    SegmentsOption,
    StepsOption,
)


def register(app: typer.Typer) -> None:
    """Add ``explain-box`` to the ``limner`` command."""
    app.command("explain-box")(explain_box_command)


def explain_box_command(
    image: Annotated[Path, typer.Argument(help="The photo (any size).")],
    detector: Annotated[
        str,
        typer.Option(
            help="An object detector: an ONNX, Keras or TorchScript file (its limner-model.json "
            "beside it, or --metadata), a Hugging Face object-detection directory, an Open "
            "Inference URL (with --metadata), or the built-in opencv-faces."
        ),
    ],
    metadata: Annotated[
        Path | None,
        typer.Option(help="The detector's limner-model.json (problem_type: detection)."),
    ] = None,
    box: Annotated[
        int | None, typer.Option(help="The detection to explain, by number (default: the best).")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Explain the best-scoring detection of this class.")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="kernelshap | lime | occlusion | rise | drise; for a TorchScript or Hugging "
            "Face detector also integrated-gradients | xrai (| gradcam where hookable)."
        ),
    ] = "kernelshap",
    steps: StepsOption = None,
    layer: LayerOption = None,
    samples: SamplesOption = None,
    segments: SegmentsOption = None,
    segmentation: SegmentationOption = "slic",
    baseline: BaselineOption = "blur",
    seed: SeedOption = 0,
    out: Annotated[Path, typer.Option(help="Folder for the panes and result.json.")] = Path(
        "limner-out"
    ),
) -> None:
    """Explain which regions made an object detector see one box: the panes and a RESULT
    with the explained box and every detection (docs/detection.md)."""
    from limner.errors import InvalidInputError
    from limner.explain.detection import explain_detection
    from limner.models.detectors import BUILTIN_DETECTORS, detector_metadata_for, load_detector
    from limner.models.metadata import read_metadata_dict

    if not image.is_file():
        raise InvalidInputError(f"{image}: no such file")
    remote = detector.startswith(("http://", "https://"))
    if detector not in BUILTIN_DETECTORS and not remote and not Path(detector).exists():
        raise InvalidInputError(f"{detector}: no such file or folder (an object detector)")
    given = None
    if metadata is not None:
        if not metadata.is_file():
            raise InvalidInputError(f"{metadata}: no such file (the detector's metadata)")
        given = read_metadata_dict(metadata)
    described = detector_metadata_for(detector, given)
    if described is None:
        raise InvalidInputError(
            f"{detector}: not an object detector; its limner-model.json (beside it, or "
            '--metadata) needs "problem_type": "detection" and a detection block'
        )
    model = load_detector(detector, described)
    settings: dict[str, Any] = {"segmentation": segmentation, "baseline": baseline, "seed": seed}
    if samples is not None:
        settings["samples"] = samples
    if segments is not None:
        settings["segments"] = segments
    if steps is not None:
        settings["steps"] = steps
    if layer is not None:
        settings["layer"] = layer
    exp = explain_detection(image, model, box=box, label=label, method=method, **settings)
    folder = exp.save(out / f"{image.stem}-box{exp.target.index}")
    result = exp.to_dict()

    det = result["detection"]
    table = Table(title=f"{escape(image.name)}: box {det['index']} ({escape(det['label'])})")
    for name in ("box (xyxy)", "score", "detections", "deletion AUC", "insertion AUC"):
        table.add_column(name)
    c = result["explanations"][0]
    table.add_row(
        ", ".join(f"{v:g}" for v in det["box"]),
        f"{det['score']:.3f}",
        str(len(det["detections"])),
        f"{c['deletion_auc']:.3f}",
        f"{c['insertion_auc']:.3f}",
    )
    console.print(table)
    console.print(f"panes and result.json: {escape(str(folder))}")
