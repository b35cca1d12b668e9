"""``limner explain IMAGE...``: explain images with a model, write the panes, print a summary."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from limner.cli.common import console, progress_bar, report_error
from limner.cli.model_options import (
    BaselineOption,
    InputSizeOption,
    LabelsOption,
    LayerOption,
    LayoutOption,
    MeanOption,
    MetadataOption,
    OutputOption,
    SamplesOption,
    ScaleOption,
    SeedOption,
    SegmentationOption,
    SegmentsOption,
    StdOption,
    StepsOption,
)
from limner.imaging.decode import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from limner.explain import Explanation

DEFAULT_OUT = "limner-explanations"


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the CLI."""
    app.command("explain")(explain_command)


def explain_command(
    ctx: typer.Context,
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, WebP, BMP, TIFF, GIF), or folders of them (their "
            "images, in name order)."
        ),
    ],
    model: Annotated[str, typer.Option("--model", help="Model spec.")] = "efficientnet-lite0",
    method: Annotated[
        str,
        typer.Option(
            help="kernelshap | lime | occlusion | rise; for PyTorch models also "
            "integrated-gradients | gradcam | xrai; amortized with --explainer"
        ),
    ] = "kernelshap",
    explainer: Annotated[
        Path | None,
        typer.Option(help="method amortized: a folder from limner explainer train."),
    ] = None,
    samples: SamplesOption = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Budget of the adaptive default (kernelshap).")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the intervals.")] = 0.9,
    settle_top: Annotated[
        int, typer.Option(help="Top regions whose order and signs must settle.")
    ] = 3,
    tie_tolerance: Annotated[
        float,
        typer.Option(
            help="Adjacent top regions within this share of the largest weight count as tied."
        ),
    ] = 0.0,
    steps: StepsOption = None,
    layer: LayerOption = None,
    segmentation: SegmentationOption = "slic",
    segments: SegmentsOption = None,
    baseline: BaselineOption = "blur",
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Class to explain (repeatable).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Explain the K most probable classes.")] = 1,
    seed: SeedOption = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    max_pixels: Annotated[
        int,
        typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this."),
    ] = DEFAULT_MAX_PIXELS,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the panes: OUT/<image>/<method>/.")
    ] = Path(DEFAULT_OUT),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as one JSON document.")
    ] = False,
    metadata: MetadataOption = None,
    labels: LabelsOption = None,
    input_size: InputSizeOption = None,
    layout: LayoutOption = None,
    scale: ScaleOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output: OutputOption = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            help="Header for a URL model, 'Name: value' (repeatable; gRPC metadata for grpc://)."
        ),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option(
            "--curves/--no-curves",
            help="Deletion and insertion curves (AUCs, sufficient and necessary regions); "
            "--no-curves skips them: the region methods' RESULT then has them null.",
        ),
    ] = True,
    view: Annotated[
        str | None,
        typer.Option(
            help="Also write a Vertex-style view of each class, {class}-{label}-view.png: "
            "name=value pairs, e.g. type=PIXELS,polarity=both,color_map=VIRIDIS (type, "
            "polarity, clip_percent_upperbound, clip_percent_lowerbound, color_map, "
            "overlay_type; see docs/vertex.md)."
        ),
    ] = None,
    vertex_metadata: Annotated[
        Path | None,
        typer.Option(
            "--vertex-metadata",
            help="A Vertex explanation metadata JSON file: its visualization becomes the view "
            "(--view values win) and its xrai/integrated-gradients method and step_count apply "
            "unless --method/--steps are given.",
        ),
    ] = None,
) -> None:
    """Explain which regions of each image pushed the model's prediction up or down.

    An image that cannot be read is reported on one line and the others are still explained;
    the exit status is then 2. A URL model (http(s)://host/v2/models/NAME, or
    grpc://host:port/NAME for the protocol's gRPC side) gets --header values with every request;
    an http(s) URL also gets $LIMNER_API_KEY when it is a limner server asking for a key. What a
    model or its server does not tell (labels, input size and settings) comes from --metadata
    or the small flags.
    """
    from limner.cli.model_options import model_hints, parse_headers, with_limner_key
    from limner.errors import InvalidInputError, LimnerError
    from limner.explain import BASELINES, METHODS, SEGMENTATIONS, explain
    from limner.imaging import read_image
    from limner.models import Model, load_model

    view_settings = None
    if vertex_metadata is not None:
        from click.core import ParameterSource

        from limner.views import read_vertex_metadata

        vertex = read_vertex_metadata(vertex_metadata)
        if vertex.method and ctx.get_parameter_source("method") == ParameterSource.DEFAULT:
            method = vertex.method
        if vertex.steps and steps is None and method in ("xrai", "integrated-gradients"):
            steps = vertex.steps
        view_settings = vertex.view
    if view is not None:
        from limner.imaging.views import ViewSettings

        view_settings = ViewSettings.parse(view, view_settings or ViewSettings.default_for(method))
    for name, value, allowed in (
        ("method", method, (*METHODS, "amortized")),
        ("segmentation", segmentation, SEGMENTATIONS),
        ("baseline", baseline, BASELINES),
    ):
        if value not in allowed:
            raise InvalidInputError(f"--{name} must be one of {', '.join(allowed)}, not {value!r}")
    hints = model_hints(
        metadata=metadata,
        labels=labels,
        input_size=input_size,
        layout=layout,
        scale=scale,
        mean=mean,
        std=std,
        output=output,
    )
    learned = None
    if explainer is not None:
        from limner.amortized import load_explainer

        learned = load_explainer(explainer)  # a bad folder fails before any image is read
    headers = parse_headers(header)
    if model.startswith(("http://", "https://")):
        headers = with_limner_key(model, headers)
    elif headers and not model.lower().startswith(("grpc://", "grpcs://")):
        raise InvalidInputError("--header applies to URL models only")
    inputs, errors = expand_inputs(images)
    folders = output_folders(inputs, out, method)
    clf: Model | None = None  # loaded with the first readable image
    results = []
    names = short_names(inputs)
    prefix = common_folder(inputs)
    table = Table(
        "image",
        "label",
        "p",
        "top regions (id: share)",
        "R²",
        "s",
    )
    table.columns[0].overflow = "fold"
    table.columns[0].min_width = min(24, max((len(n) for n in names.values()), default=5))
    table.columns[3].overflow = "fold"
    warnings: dict[str, list[str]] = {}  # warning text -> what it was said of, in order
    classes_of: dict[str, int] = {}  # image -> how many classes it explained
    started = time.perf_counter()
    try:
        with progress_bar("explaining", None) as update:
            for path, folder in zip(inputs, folders, strict=True):
                try:
                    rgb = read_image(path, max_pixels=max_pixels)
                except LimnerError as exc:
                    errors.append({"input": str(path), "error": exc.message})
                    report_error(exc.message)
                    continue
                if clf is None:
                    clf = load_model(
                        model, device=device, metadata=hints, headers=headers or None, verify=True
                    )
                exp = explain(
                    rgb,
                    clf,
                    method=method,
                    samples=samples,
                    max_samples=max_samples,
                    confidence=confidence,
                    settle_top=settle_top,
                    tie_tolerance=tie_tolerance,
                    segmentation=segmentation,
                    segments=segments,
                    baseline=baseline,
                    classes=classes or None,
                    top_k=top_k,
                    seed=seed,
                    progress=update,
                    steps=steps,
                    layer=layer,
                    max_pixels=max_pixels,
                    explainer=learned,
                    curves=curves,
                )
                exp.save(folder)
                result = {"input": str(path), **exp.to_dict(_file_refs(exp, folder))}
                if view_settings is not None:
                    for ce in result["explanations"]:
                        written = exp.save_view(ce["class_index"], view_settings, directory=folder)
                        ce["images"]["view"] = str(written)
                del exp, rgb  # the full-size photo goes before the next one is decoded
                results.append(result)
                for ce in result["explanations"]:
                    top = ", ".join(f"{r['id']}: {r['share']:.0f}%" for r in ce["regions"][:3])
                    table.add_row(
                        names[path],
                        ce["label"],
                        f"{ce['probability']:.3f}",
                        # settled None: a deterministic method, with nothing to settle
                        top + (" (not settled)" if ce["settled"] is False else ""),
                        f"{ce['fit_r2']:.2f}",
                        f"{result['seconds']:.2f}",
                    )
                    for w in ce["warnings"]:
                        said_of = warnings.setdefault(f"{names[path]}: {w}", [])
                        said_of.append(ce["label"])
                classes_of[names[path]] = len(result["explanations"])
    finally:
        if clf is not None:
            clf.close()
    if as_json:
        print(json.dumps({"results": results, "errors": errors}, indent=2))
    elif results:
        if prefix:
            console.print(f"images in {escape(prefix)}/", highlight=False)
        console.print(table)
        for w, labels_ in warnings.items():  # once per image, however many classes it concerns
            image, _, text = w.partition(": ")
            some = len(labels_) < classes_of.get(image, 1)
            classes_ = f" ({', '.join(labels_)})" if some else ""
            console.print(
                f"[yellow]warning[/yellow] {escape(image)}{escape(classes_)}: {escape(text)}",
                highlight=False,
            )
        failed = f"; {len(errors)} could not be read" if errors else ""
        wall = time.perf_counter() - started
        console.print(
            f"{len(results)} explained in {wall:.1f} s{failed}; panes written under {out}/",
            highlight=False,
        )
    if errors:
        raise typer.Exit(2)


def common_folder(paths: list[Path]) -> str:
    """The folder all ``paths`` share (empty when they share none, or for one file)."""
    if len(paths) < 2:
        return ""
    try:
        common = os.path.commonpath([str(p.parent) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return ""
    return "" if common in ("", ".") else common


def short_names(paths: list[Path]) -> dict[Path, str]:
    """Each path as the table shows it: relative to :func:`common_folder` (the table's header
    names that folder), so a long shared prefix does not crowd out the file names."""
    prefix = common_folder(paths)
    return {p: os.path.relpath(p, prefix) if prefix else str(p) for p in paths}


#: Files a folder given as input contributes (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """The image files to explain: files as given, folders as their images in name order.

    Returns the files and the errors of folders without images (each also reported).
    """
    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            message = f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})"
            errors.append({"input": str(path), "error": message})
            report_error(message)
        files.extend(found)
    return files, errors


def output_folders(inputs: list[Path], out: Path, method: str) -> list[Path]:
    """``OUT/<name>/<method>/`` for each input, ``<name>`` its file name's stem; inputs that share
    a stem get ``<stem>-2``, ``<stem>-3``, ... in input order, so no result overwrites another."""
    used: set[str] = set()
    folders = []
    for path in inputs:
        stem = name = _slug(path.stem)
        n = 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        folders.append(out / name / method)
    return folders


def _file_refs(exp: Explanation, folder: Path) -> Callable[[int, str], str]:
    """Image references of the CLI: the paths of the PNG files written by ``save``."""
    return lambda class_index, kind: str(folder / exp.file_name(class_index, kind))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "image"
