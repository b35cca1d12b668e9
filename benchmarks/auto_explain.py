"""Scoring throughput with ``auto_explain`` on and off, and how long the explanations take.

    .venv/bin/python benchmarks/auto_explain.py [--images 200] [--rounds 2] [--train N]

Trains a shapes classifier (``limner train``'s default, 96×96), serves it (SQLite, a real
uvicorn on loopback), scores ``--train`` transactions (default: ``--images``) and trains the
deployment's amortized explainer from them through the API (timed). Then, ``--rounds`` times
in alternating order, scores ``--images`` new shapes in requests of ``--batch`` images from
``--clients`` clients, once with ``auto_explain`` off and once on, and reports the scoring
images/s of each, their ratio, and with ``auto_explain`` how many of the scored images were
explained, with which method, and how long after the last scoring the last explanation
finished. The explanations are made without their curves (``"curves": false``, what
``auto_explain`` is for) unless ``--curves`` is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from limner.datasets import make_shapes
from limner.imaging import encode_png
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key
from limner.training import load_image_folder, train


def score_all(
    url: str, key: str, dep_id: str, pngs: list[bytes], clients: int, batch: int
) -> tuple[float, list[str]]:
    """Score ``pngs`` from ``clients`` threads in requests of ``batch``: (images/s, ids)."""
    chunks = [pngs[i : i + batch] for i in range(0, len(pngs), batch)]
    ids: list[str] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
            for chunk in chunks[k::clients]:
                files = [("file", (f"{i}.png", png, "image/png")) for i, png in enumerate(chunk)]
                answer = http.post(f"{url}/v1/deployments/{dep_id}/predictions", files=files)
                answer.raise_for_status()
                with lock:
                    ids.extend(p["scoring_id"] for p in answer.json()["predictions"])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(pngs) / (time.perf_counter() - started), ids


def explained(http: httpx.Client, ids: list[str], timeout: float) -> tuple[dict[str, int], float]:
    """Wait until every transaction of ``ids`` has a finished (or failed) explanation: the
    count per (status, method) and the seconds it took."""
    started = time.perf_counter()
    pending = set(ids)
    counts: dict[str, int] = {}
    while pending and time.perf_counter() - started < timeout:
        for sid in list(pending):
            found = http.get("/v1/explanations", params={"scoring_id": sid}).json()
            done = [e for e in found["explanations"] if e["status"] in ("finished", "failed")]
            if done:
                method = (done[0]["result"] or {}).get("method", done[0]["settings"]["method"])
                label = f"{done[0]['status']} {method}"
                counts[label] = counts.get(label, 0) + 1
                pending.discard(sid)
        time.sleep(0.2)
    if pending:
        counts["not done"] = len(pending)
    return counts, time.perf_counter() - started


def main() -> None:
    """Run the comparison and print its table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--curves", action="store_true", help="explanations with their curves")
    ap.add_argument("--train", type=int, default=0,
                    help="transactions the explainer learns from (default: --images)")  # fmt: skip
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-auto-"))
    n = args.images
    learn = args.train or n
    per_class = (learn + n * 2 * args.rounds) // 3 + 20
    make_shapes(root / "shapes", per_class=per_class, size=96,
                classes=["circle", "square", "triangle"], seed=0)  # fmt: skip
    print("training the classifier …", file=sys.stderr)
    train(root / "shapes", root / "model")
    folder = load_image_folder(root / "shapes", 96)
    pool = [encode_png(im) for im in folder.train.images] + [
        encode_png(im) for im in folder.validation.images
    ]
    order = np.random.default_rng(0).permutation(len(pool))  # the folders list class by class
    rounds = [order[learn + i * n : learn + (i + 1) * n] for i in range(2 * args.rounds)]
    sets = [[pool[j] for j in part] for part in [order[:learn], *rounds]]
    settings = Settings(data_dir=root / "data", database_url="", workers=2, model_roots=str(root))
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default", role="admin")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
        )
        dep = http.post(
            "/v1/deployments", json={"name": "shapes", "model": str(root / "model")}
        ).json()
        sub = http.post("/v1/subscriptions", json={"deployment_id": dep["id"]}).json()
        path = f"/v1/subscriptions/{sub['id']}/explainability"
        http.put(path, json={"baseline": "gray"}).raise_for_status()
        score_all(server.url, key, dep["id"], sets[0], args.clients, args.batch)
        started = time.perf_counter()
        queued = http.post(
            f"/v1/deployments/{dep['id']}/explainers",
            json={"limit": learn, "baseline": "gray", "calibration_images": 20,
                  "reference_samples": 1024},
        ).json()  # fmt: skip
        while (row := http.get(f"/v1/explainers/{queued['id']}").json())["status"] not in (
            "finished",
            "failed",
        ):
            time.sleep(1)
        print(
            f"explainer from {learn} transactions: {row['status']} in "
            f"{time.perf_counter() - started:.0f} s (held-out error {row['heldout_error']})",
            file=sys.stderr,
        )
        rates: dict[bool, list[float]] = {False: [], True: []}
        rows = []
        for r in range(args.rounds):
            for j, auto in enumerate((False, True) if r % 2 == 0 else (True, False)):
                body = {"baseline": "gray", "auto_explain": auto, "curves": args.curves}
                http.put(path, json=body).raise_for_status()
                images = sets[1 + 2 * r + j]
                rate, ids = score_all(server.url, key, dep["id"], images, args.clients, args.batch)
                rates[auto].append(rate)
                if auto:
                    counts, seconds = explained(http, ids, timeout=1800)
                    rows.append((r, rate, counts, seconds))
                else:
                    rows.append((r, rate, None, 0.0))
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"\n{n} images per run, {args.clients} clients × {args.batch} images per request, "
        f"curves {'on' if args.curves else 'off'}\n"
    )
    print("| round | auto_explain | scoring images/s | explained | last explanation after |")
    print("| --- | --- | ---: | --- | ---: |")
    for r, rate, counts, seconds in rows:
        if counts is None:
            print(f"| {r + 1} | off | {rate:.1f} | – | – |")
        else:
            what = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            print(f"| {r + 1} | on | {rate:.1f} | {what} | {seconds:.1f} s |")
    print(f"\nmedian scoring images/s: off {off:.1f}, on {on:.1f}, ratio {on / off:.2f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
