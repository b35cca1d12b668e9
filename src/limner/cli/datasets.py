"""`limner datasets`: write synthetic data sets in the layout `limner train` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `datasets` command group to the CLI."""
    group = typer.Typer(
        help="Write synthetic data sets (train/ and validation/, a folder per class).",
        no_args_is_help=True,
    )

    @group.command("shapes")
    def shapes(
        directory: Annotated[Path, typer.Argument(help="Folder to write (must be empty).")],
        per_class: Annotated[
            int, typer.Option("--per-class", help="Images per class, over both splits.")
        ] = 200,
        size: Annotated[int, typer.Option("--size", help="Side of the square images.")] = 96,
        classes: Annotated[
            str,
            typer.Option(
                "--classes",
                help="Comma-separated shapes: circle, square, triangle, hexagon, star, cross "
                "(two for a binary problem).",
            ),
        ] = "circle,square,triangle",
        seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
        validation: Annotated[
            float, typer.Option("--validation", help="Share of each class in validation/.")
        ] = 0.2,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace the data set in a non-empty folder.")
        ] = False,
        preset: Annotated[
            str,
            typer.Option(
                "--preset",
                help="textured: equal areas on textured backgrounds (the harder set, for the "
                "frozen backbone of `limner train`); plain: high-contrast shapes, one size per "
                "class, on plain backgrounds (a small network trained from scratch learns it "
                "in a minute).",
            ),
        ] = "textured",
    ) -> None:
        """Shapes with ground-truth masks under DIR/masks/ (presets: textured, plain)."""
        from limner.cli.common import console, progress_bar
        from limner.datasets import make_shapes

        with progress_bar("drawing shapes", per_class * max(1, classes.count(",") + 1)) as update:
            summary = make_shapes(
                directory,
                per_class=per_class,
                size=size,
                classes=classes.split(","),
                seed=seed,
                validation_fraction=validation,
                overwrite=overwrite,
                progress=update,
                preset=preset,
            )
        counts = ", ".join(
            f"{split} {sum(by_class.values())}" for split, by_class in summary.counts.items()
        )
        console.print(
            f"wrote {len(summary.classes)} {summary.preset} classes "
            f"({', '.join(summary.classes)}) at "
            f"{summary.size}×{summary.size} to {summary.directory}: {counts}; masks under "
            f"{Path(summary.directory) / 'masks'}"
        )

    app.add_typer(group, name="datasets")
