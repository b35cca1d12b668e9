"""How `limner explain` scales with the original image size: time and peak memory.

Runs the real CLI (a fresh process each time, as users run it) on the same photo at 224×224,
4000×3000 (12 MP) and 7600×5200 (40 MP, the default pixel limit) and prints a markdown table of
median wall seconds, the engine's own seconds, and the process's own peak memory (its maximum
resident set, as the kernel reports it for that one child: ``os.wait4``), with the peak above the
224×224 run's per input pixel.

    .venv/bin/python benchmarks/bench_image_size.py [--repeats 3] [--sizes 224x224,7600x5200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from limner.samples import sample_photo

SIZES = [(224, 224), (4000, 3000), (7600, 5200)]


def run_once(path: Path, out: Path, method: str) -> tuple[float, float, int, dict[str, object]]:
    """One ``limner explain`` in a fresh process: wall s, engine s, peak bytes, its RESULT."""
    cmd = [sys.executable, "-m", "limner.cli.main", "explain", str(path), "--json"]
    cmd += ["--method", method, "--out", str(out)]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
        # wait4 gives the rusage of this one child: its own peak, not the largest of all children
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.read().decode()}")
        result = json.loads(stdout.read())["results"][0]
    return wall, float(result["seconds"]), usage.ru_maxrss * 1024, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="kernelshap")
    parser.add_argument(
        "--sizes",
        default=",".join(f"{w}x{h}" for w, h in SIZES),
        help="comma-separated WxH; the first is the base the others are compared with",
    )
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    photo = Image.fromarray(sample_photo("chelsea"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            path = Path(tmp) / f"chelsea-{w}x{h}.jpg"
            photo.resize((w, h), Image.Resampling.BICUBIC).save(path, quality=90)
            walls, engine, peaks = [], [], []
            for _ in range(args.repeats):
                wall, eng, peak, result = run_once(path, Path(tmp) / "out", args.method)
                walls.append(wall)
                engine.append(eng)
                peaks.append(peak)
            pane = Image.open(result["explanations"][0]["images"]["positive"])  # type: ignore[index]
            rows.append(
                (
                    w,
                    h,
                    path.stat().st_size,
                    statistics.median(walls),
                    statistics.median(engine),
                    max(peaks),
                    pane.size,
                )
            )
    base_wall, base_peak = rows[0][3], rows[0][5]
    print(
        f"| image | file | wall s (median of {args.repeats}) | engine s | × base wall "
        "| peak MB (max) | above base, B/pixel | panes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, (w, h, size, wall, eng, peak, pane) in enumerate(rows):
        per_pixel = f"{(peak - base_peak) / (w * h):.1f}" if i else "—"
        print(
            f"| {w}×{h} | {size / 1e6:.2f} MB | {wall:.2f} | {eng:.2f} | {wall / base_wall:.2f} | "
            f"{peak / 1e6:.0f} | {per_pixel} | {pane[0]}×{pane[1]} |"
        )


if __name__ == "__main__":
    main()
