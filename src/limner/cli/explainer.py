"""``limner explainer train --model SPEC --images DIR --out DIR``: learn an explainer for a model
(method ``amortized``, docs/amortized.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from limner.cli.common import console, terminal_progress

explainer_app = typer.Typer(help="Explainers learned for one model (method amortized).")


def register(app: typer.Typer) -> None:
    """Add ``explainer`` (and its ``train``) to the CLI."""
    app.add_typer(explainer_app, name="explainer")


@explainer_app.command("train")
def train_command(
    model: Annotated[str, typer.Option("--model", help="The model spec it explains.")],
    images: Annotated[
        Path, typer.Option(help="A folder of images like the model's (searched recursively).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the explainer to.")],
    baseline: Annotated[
        str, typer.Option(help="blur | gray | black: what a switched-off region becomes.")
    ] = "blur",
    limit: Annotated[int, typer.Option(help="Use at most this many images (drawn).")] = 1000,
    pairs: Annotated[int, typer.Option(help="Coalition pairs evaluated per image.")] = 64,
    epochs: Annotated[int, typer.Option(help="Most training epochs (early stopping).")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the draws and the initialization.")] = 0,
) -> None:
    """Learn an explainer for MODEL from the images of a folder: the model's own coalition
    games, a held-out fifth for early stopping and calibration, and a folder with
    explainer.safetensors and limner-explainer.json."""
    from limner.errors import InvalidInputError

    if baseline not in ("blur", "gray", "black"):
        raise InvalidInputError(f"--baseline must be blur, gray or black, not {baseline!r}")
    if not images.is_dir():
        raise InvalidInputError(f"{images}: no such folder")
    train_and_save(model, images, out, baseline=baseline, limit=limit, pairs=pairs,
                   epochs=epochs, seed=seed)  # fmt: skip


def train_and_save(
    model: str,
    images: Path,
    out: Path,
    *,
    baseline: str = "blur",
    limit: int = 1000,
    pairs: int = 64,
    epochs: int = 60,
    seed: int = 0,
) -> Path:
    """Train an explainer for the model spec ``model`` on (at most ``limit`` drawn) images of
    the folder ``images``, with a progress bar, save it to ``out`` and say how it did."""
    from limner import load_model
    from limner.amortized import train_explainer
    from limner.amortized.explainer import file_sha256
    from limner.errors import InvalidInputError
    from limner.imaging.decode import decode_image
    from limner.imaging.transform import resize
    from limner.training.data import IMAGE_SUFFIXES

    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 10:
        raise InvalidInputError(f"{images}: {len(files)} images; an explainer needs at least 10")
    rng = np.random.default_rng(seed)
    if len(files) > limit:
        files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
    loaded = load_model(model)
    w, h = loaded.input_size
    pictures = [resize(decode_image(p), w, h) for p in files]
    names = {"games": "the model's games", "training": "training", "calibrating": "calibrating"}
    with terminal_progress() as progress:
        task = progress.add_task("the model's games", total=None) if progress else None

        def update(stage: str, done: int, total: int) -> None:
            if progress is not None and task is not None:
                progress.update(task, description=names[stage], completed=done, total=total)

        learned = train_explainer(
            loaded, pictures, model_sha256=file_sha256(model) if Path(model).exists() else None,
            baseline=baseline, pairs=pairs, epochs=epochs, seed=seed, progress=update,
        )  # fmt: skip
    folder = learned.save(out)
    meta = learned.meta
    console.print(
        f"trained an explainer for {escape(loaded.name)} on {meta['training_images']} images "
        f"({meta['heldout_images']} held out) in {meta['seconds']:.0f} s: held-out error "
        f"{meta['calibration']['heldout_error']:.3f} (relative squared error against "
        f"KernelSHAP with {meta['calibration']['reference_samples']} samples); "
        f"{escape(str(folder))}"
    )
    return folder
