"""What running models in contained workers costs: the built-in model in the server's own
process against the same model in a worker, side by side in one run.

Both variants sit behind the same batcher, as in the service. Scoring: ``--clients`` threads
each score one photo at a time for ``--seconds`` (images per second). Explanations: the default
method on the bundled photos (seconds each). The two variants alternate within each round, so
drift on the machine hits both; the table gives the median over rounds and the ratio's range.

    .venv/bin/python benchmarks/containment.py [--rounds 5] [--seconds 4] [--clients 8]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from limner.explain import explain
from limner.imaging.transform import resize
from limner.jobs.batcher import Batcher
from limner.jobs.sandbox import LoadSpec, WorkerLimits
from limner.jobs.workers import WorkerModel
from limner.models import Model, load_model
from limner.samples import sample_photo

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]


def scoring_rate(model: Model, batcher: Batcher, clients: int, seconds: float) -> float:
    """Images per second that ``clients`` threads, one image a request, get through."""
    w, h = model.input_size
    x = model.preprocess(resize(sample_photo("chelsea"), w, h)[None])
    done = [0] * clients
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            batcher.predict(x)
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def explanation_seconds(model: Model, batcher: Batcher) -> float:
    """Mean seconds of one default explanation of each photo."""
    start = time.perf_counter()
    for name in PHOTOS:
        explain(sample_photo(name), model, predict=batcher.predict, seed=0)
    return (time.perf_counter() - start) / len(PHOTOS)


def main() -> None:
    """Print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    inline = load_model("efficientnet-lite0")
    worker = WorkerModel(LoadSpec("efficientnet-lite0"), WorkerLimits(memory_bytes=6 * 1024**3))
    variants: dict[str, Model] = {"in the server": inline, "contained worker": worker}
    batchers = {
        name: Batcher(m.predict_tensor, max_batch=m.preferred_batch_size, name=name)
        for name, m in variants.items()
    }
    for name, m in variants.items():  # warm both
        scoring_rate(m, batchers[name], 2, 0.5)
        explain(sample_photo("coffee"), m, predict=batchers[name].predict, samples=32)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            rates[name].append(
                scoring_rate(variants[name], batchers[name], args.clients, args.seconds)
            )
            times[name].append(explanation_seconds(variants[name], batchers[name]))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    def ratio(values: dict[str, list[float]]) -> tuple[float, float, float]:
        q = np.array(values["contained worker"]) / np.array(values["in the server"])
        return float(np.median(q)), float(q.min()), float(q.max())

    print()
    print("| | in the server | contained worker | ratio: median (range over rounds) |")
    print("|---|---|---|---|")
    for label, values, digits in (
        (f"scoring, {args.clients} clients, images/s", rates, 1),
        ("explanation, default method, s", times, 3),
    ):
        med, lo, hi = ratio(values)
        a = statistics.median(values["in the server"])
        b = statistics.median(values["contained worker"])
        print(f"| {label} | {a:.{digits}f} | {b:.{digits}f} | {med:.3f} ({lo:.3f}–{hi:.3f}) |")
    for b in batchers.values():
        b.close()
    worker.close()


if __name__ == "__main__":
    main()
