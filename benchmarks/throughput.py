"""Explanation latency and shared-batcher throughput, on the CPU or a GPU.

Measures on efficientnet-lite0 (ONNX Runtime on the CPU, PyTorch bf16 channels-last on CUDA):

1. the model's peak images/s (large batches of prepared tensors, nothing else);
2. the median wall time of one explanation with ``--evals`` model evaluations (kernelshap on a
   224×224 photo, one batch per step);
3. ``--jobs`` concurrent explanation jobs on one model through the shared batcher (the service's
   path), as images/s and as a share of the peak.

    .venv/bin/python benchmarks/throughput.py [--device auto] [--evals 1000] [--jobs 32]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time

import numpy as np

import limner
from limner.imaging import resize
from limner.jobs.batcher import Batcher
from limner.samples import sample_photo


def peak(model: limner.Model, batch: int, seconds: float = 3.0) -> float:
    """Images/s of the bare forward pass on prepared tensors."""
    x = model.preprocess(np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), np.uint8))
    model.predict_tensor(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        model.predict_tensor(x)
        n += batch
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--evals", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    model = limner.load_model("efficientnet-lite0", device=args.device)
    big = 256 if model.preferred_batch_size >= 64 else 16
    photo = resize(sample_photo("chelsea"), 224, 224)
    settings = {"method": "kernelshap", "samples": args.evals, "segmentation": "slic", "seed": 0}

    peak_ips = peak(model, big)
    limner.explain(photo, model, **settings, batch_size=args.evals)  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        exp = limner.explain(photo, model, **settings, batch_size=args.evals)
        times.append(time.perf_counter() - t)
    evals = exp.model_evaluations

    batcher = Batcher(model.predict_tensor, max_batch=max(big, model.preferred_batch_size) * 4)
    done = []

    def job(seed: int) -> None:
        e = limner.explain(
            photo, model, **{**settings, "seed": seed}, predict=batcher.predict, batch_size=big
        )
        done.append(e.model_evaluations)

    threads = [threading.Thread(target=job, args=(s,)) for s in range(args.jobs)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    batcher.close()
    shared_ips = sum(done) / wall

    device = getattr(model, "device", "cpu")
    print(f"Machine: {platform.machine()}, device {device}, model {type(model).__name__}")
    print("| measure | value |")
    print("|---|---|")
    print(f"| model peak (batch {big}) | {peak_ips:.0f} images/s |")
    print(
        f"| one explanation, {evals} evaluations, median of {args.repeats} | "
        f"{statistics.median(times) * 1000:.0f} ms |"
    )
    print(
        f"| {args.jobs} concurrent jobs through the batcher | {shared_ips:.0f} images/s "
        f"({shared_ips / peak_ips:.0%} of peak), {wall:.1f} s |"
    )


if __name__ == "__main__":
    main()
