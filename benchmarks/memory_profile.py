"""Where the bytes of one explanation of a large photo go, phase by phase.

Decodes a photo, explains it, builds the RESULT, encodes each pane and saves everything, in one
process, and prints a markdown table: for each phase its seconds, the resident memory after it
and its own peak (the kernel's high-water mark, reset before each phase through
``/proc/self/clear_refs``), in MB and in bytes per input pixel above the memory before the
first phase (the interpreter, the libraries and the loaded model). Linux only.

    .venv/bin/python benchmarks/memory_profile.py [--size 7600x5200] [--method kernelshap]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

import limner
from limner.explain.result import PANES
from limner.imaging import read_image
from limner.samples import sample_photo


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark becomes the current RSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="7600x5200")
    parser.add_argument("--method", default="kernelshap")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    model = limner.load_model("efficientnet-lite0", device="cpu")
    limner.explain(sample_photo("chelsea"), model, method=args.method)  # warm the runtime
    rows: list[tuple[str, float, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        photo = Image.fromarray(sample_photo("chelsea")).resize((w, h), Image.Resampling.BICUBIC)
        photo.save(path, quality=90)
        del photo
        base = _status("VmRSS")
        state: dict[str, Any] = {}

        def phase(name: str, step: Callable[[], None]) -> None:
            _reset_peak()
            t = time.perf_counter()
            step()
            rows.append((name, time.perf_counter() - t, _status("VmRSS"), _status("VmHWM")))

        phase("decode", lambda: state.update(rgb=read_image(path)))
        phase(
            "engine",
            lambda: state.update(exp=limner.explain(state.pop("rgb"), model, method=args.method)),
        )
        ci = state["exp"].explained_classes[0]
        phase("RESULT", lambda: state.update(result=state["exp"].to_dict()))
        for kind in PANES:
            phase(f"{kind} PNG", lambda k=kind: state.update(png=state["exp"].png(ci, k)))
        state.pop("png")
        phase("save (all panes)", lambda: state["exp"].save(Path(tmp) / "out"))
        state.clear()
        phase("freed", lambda: None)
    pixels = w * h
    print(f"{w}×{h} ({pixels / 1e6:.1f} MP), memory before the first phase {base / 1e6:.0f} MB")
    print()
    print("| phase | s | RSS after, MB | peak, MB | peak above start, B/pixel |")
    print("|---|---|---|---|---|")
    for name, seconds, rss, peak in rows:
        print(
            f"| {name} | {seconds:.2f} | {rss / 1e6:.0f} | {peak / 1e6:.0f} | "
            f"{(peak - base) / pixels:.1f} |"
        )


if __name__ == "__main__":
    main()
