"""`limner train DATA_DIR --out MODEL_DIR`: fit a classifier on a folder of images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from limner.cli.common import console, terminal_progress


def register(app: typer.Typer) -> None:
    """Add the `train` command to the CLI."""
    app.command("train")(train_command)


def train_command(
    data_dir: Annotated[
        Path, typer.Argument(help="Folder with train/ and validation/, a sub-folder per class.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="Side the images are resized to (default: their median size, at most 224).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Training epochs (default 30 for efficientnet-lite0, 15 for small-cnn)."),
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="efficientnet-lite0 (frozen ImageNet backbone + trained head) or small-cnn.",
        ),
    ] = "efficientnet-lite0",
    seed: Annotated[int, typer.Option(help="Seed of the initialization and batch order.")] = 0,
    explainer: Annotated[
        bool,
        typer.Option(
            "--explainer",
            help="Also train the model's amortized explainer on the same train/ images "
            "(written to OUT/explainer; method amortized, docs/amortized.md).",
        ),
    ] = False,
) -> None:
    """Train an image classifier and write model.onnx, limner-model.json and metrics."""
    from limner.training import train

    with _training_display() as (on_stage, on_epoch):
        result = train(
            data_dir,
            out,
            image_size=image_size,
            epochs=epochs,
            arch=arch,
            seed=seed,
            on_stage=on_stage,
            on_epoch=on_epoch,
        )
    m = result.metrics
    console.print(
        f"trained {m['architecture']} on {m['train_images']} images of {len(m['labels'])} "
        f"classes at {m['image_size']}×{m['image_size']} in {m['seconds']['total']:.1f} s: "
        f"validation accuracy {m['validation_accuracy']:.1%} on {m['validation_images']} "
        f"images; model in {result.model_dir}"
    )
    if explainer:
        from limner.cli.explainer import train_and_save

        train_and_save(str(result.model_dir), Path(data_dir) / "train",
                       Path(result.model_dir) / "explainer", seed=seed)  # fmt: skip


@contextmanager
def _training_display() -> Iterator[tuple[Callable[..., None], Callable[[Any], None]]]:
    """A Rich progress bar with one line per epoch on a terminal; silent callbacks otherwise."""
    with terminal_progress() as progress:
        if progress is None:
            yield (lambda *_: None), (lambda _stats: None)
            return
        task = progress.add_task("reading images", total=None)

        def on_stage(stage: str, done: int, total: int) -> None:
            labels = {
                "reading": "reading images",
                "features": "backbone features",
                "training": "training",
                "exporting": "exporting",
            }
            progress.update(task, description=labels.get(stage, stage), completed=done, total=total)

        def on_epoch(stats: Any) -> None:
            progress.update(task, completed=stats.epoch, total=stats.epochs)
            progress.console.print(
                f"epoch {stats.epoch:>3}/{stats.epochs}  loss {stats.train_loss:.4f}  "
                f"train {stats.train_accuracy:.1%}  validation {stats.validation_accuracy:.1%}  "
                f"({stats.seconds:.2f} s)"
            )

        yield on_stage, on_epoch
