"""How `limner explain` scales with the original image size.

Runs the real CLI (a fresh process each time, as users run it) on the same photo at 224×224 and
at 4000×3000, and prints a markdown table of median wall seconds, the engine's own seconds, and
the size of the panes written.

    .venv/bin/python benchmarks/bench_image_size.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from limner.samples import sample_photo

SIZES = [(224, 224), (4000, 3000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="kernelshap")
    args = parser.parse_args()
    photo = Image.fromarray(sample_photo("chelsea"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            path = Path(tmp) / f"chelsea-{w}x{h}.jpg"
            photo.resize((w, h), Image.Resampling.BICUBIC).save(path, quality=90)
            walls, engine = [], []
            for _ in range(args.repeats):
                out = Path(tmp) / "out"
                t = time.perf_counter()
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "limner.cli.main",
                        "explain",
                        str(path),
                        "--json",
                        "--method",
                        args.method,
                        "--out",
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                walls.append(time.perf_counter() - t)
                result = json.loads(proc.stdout)["results"][0]
                engine.append(result["seconds"])
            pane = Image.open(result["explanations"][0]["images"]["positive"])
            rows.append(
                (
                    f"{w}×{h}",
                    path.stat().st_size,
                    statistics.median(walls),
                    statistics.median(engine),
                    pane.size,
                )
            )
    base = rows[0][2]
    print(f"| image | file | wall s (median of {args.repeats}) | engine s | × 224² wall | panes |")
    print("|---|---|---|---|---|---|")
    for name, size, wall, eng, pane in rows:
        print(
            f"| {name} | {size / 1e6:.2f} MB | {wall:.2f} | {eng:.2f} | {wall / base:.2f} | "
            f"{pane[0]}×{pane[1]} |"
        )


if __name__ == "__main__":
    main()
