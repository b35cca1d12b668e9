"""What the hash-chained audit trail costs: audited requests and scoring, trail on against off.

A real server (the service embedded in a child process, so that its event loop and the
clients do not share one interpreter lock) serves one space on SQLite, then on PostgreSQL
(``LIMNER_TEST_DATABASE_URL``; skipped with a note when it is not set). Each round starts it
twice over the same database, once with ``Settings(audit=True)`` and once with
``Settings(audit=False)``, in alternating order. In each run:

- ``--clients`` threads each make ``--requests`` audited requests, in turn: a settings change
  (``PUT /v1/subscriptions/{id}/explainability``), an explanation request
  (``POST /v1/explanations``, a tiny ONNX model with 16 samples, so the jobs drain quickly) and,
  where the route exists, an annotation (``POST /v1/explanations/{id}/annotations``). The
  median latency of all of them is the run's number.
- once the explanation jobs have drained, ``--clients`` threads score one image a request for
  ``--seconds`` (images per second; scoring is not audited).

The table gives, per database and setting, the median over rounds and the min-max over rounds,
and the overhead: the median of the rounds' on/off ratios, with their min-max.

``--paired`` measures both settings at the same time instead: two servers, one with the trail on
and one with it off, each over a database of its own, run side by side for the whole benchmark,
and in each round ``--clients`` threads load each of them at once (then each is scored at once).
Whatever else the machine does during a round slows both alike, so the rounds' on/off ratios
spread far less than those of runs made one after the other; each server gets about half of the
machine. The overhead is then also given with a 95% bootstrap interval of the ratio of the two
medians (requests resampled within each round).

``--aa`` (with ``--paired``) serves both with the trail off: the overhead it prints is what the
pairing itself adds, and should be zero within its interval.

    .venv/bin/python benchmarks/audit_overhead.py [--rounds 3] [--clients 16] [--requests 45]
        [--seconds 5] [--paired [--aa]]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

#: The environment variable naming the PostgreSQL server to measure on.
PG_ENV = "LIMNER_TEST_DATABASE_URL"

#: Brightness of 8x8 images (the tiny model's metadata).
TINY_META = {
    "labels": ["dark", "bright"],
    "input": {"width": 8, "height": 8, "layout": "NCHW", "dtype": "float32", "scale": 1 / 255},
    "output": "probabilities",
    "problem_type": "binary",
}

#: Explanation settings of the runs (two alternate, so that every PUT changes something).
SETTINGS = [
    {"enabled": True, "samples": 16, "segmentation": "grid", "segments": 4, "baseline": "gray"},
    {"enabled": True, "samples": 17, "segmentation": "grid", "segments": 4, "baseline": "gray"},
]

ANNOTATIONS = "/v1/explanations/{explanation_id}/annotations"


def tiny_onnx() -> bytes:
    """A real ONNX classifier: P(bright) from the mean of an 8x8 image."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[-8.0, 8.0]] * 3, np.float32) / 3, "w")
    b = numpy_helper.from_array(np.array([4.0, -4.0], np.float32), "b")
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probability"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def png(value: int) -> bytes:
    """An 8x8 gray PNG."""
    from limner.imaging import encode_png

    return encode_png(np.full((8, 8, 3), value, np.uint8))


def _serve(settings_json: str, port_out: Any, stop: Any) -> None:
    """The child process: serve ``settings`` until ``stop`` is set."""
    from limner.service import EmbeddedServer, create_app
    from limner.settings import Settings

    settings = Settings.model_validate_json(settings_json)
    with EmbeddedServer(create_app(settings)) as server:
        port_out.put(server.url)
        stop.wait()


@contextmanager
def server(settings: Any) -> Iterator[str]:
    """Serve ``settings`` from a child process for the block; yields the base URL."""
    ctx = mp.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(settings.model_dump_json(), urls, stop))
    proc.start()
    try:
        yield urls.get(timeout=120)
    finally:
        stop.set()
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()


@dataclass
class Space:
    """What the runs act on: a key, a deployment, its subscription, scored transactions."""

    key: str
    deployment_id: str
    subscription_id: str
    scoring_ids: list[str]


def prepare(url: str, key: str, transactions: int) -> Space:
    """Deploy the tiny model, subscribe it, turn explanations on, score ``transactions``."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as h:
        dep = h.post(
            "/v1/deployments",
            data={"name": "tiny", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", tiny_onnx(), "application/octet-stream")},
        )
        dep.raise_for_status()
        sub = h.post("/v1/subscriptions", json={"deployment_id": dep.json()["id"]})
        sub.raise_for_status()
        h.put(f"/v1/subscriptions/{sub.json()['id']}/explainability", json=SETTINGS[0])
        sids = []
        for i in range(transactions):
            r = h.post(
                f"/v1/deployments/{dep.json()['id']}/predictions",
                files={"file": ("x.png", png(20 + 7 * i % 230), "image/png")},
            )
            r.raise_for_status()
            sids.append(r.json()["predictions"][0]["scoring_id"])
    return Space(key, dep.json()["id"], sub.json()["id"], sids)


def has_annotations(url: str) -> bool:
    """Whether the server has the annotation route (built separately)."""
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    return "post" in paths.get(ANNOTATIONS, {})


def audited_latencies(
    url: str, space: Space, clients: int, requests: int, annotate_on: list[str] | None
) -> list[float]:
    """Seconds of each audited request of ``clients`` threads making ``requests`` each (the
    annotations go round the finished explanations ``annotate_on``: one explanation holds at
    most 500)."""
    out: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        auth = {"Authorization": f"Bearer {space.key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as h:
            start.wait()
            for k in range(requests):
                kind = k % (3 if annotate_on else 2)
                t0 = time.perf_counter()
                if kind == 0:
                    r = h.put(
                        f"/v1/subscriptions/{space.subscription_id}/explainability",
                        json=SETTINGS[(i + k) % 2],
                    )
                elif kind == 1:
                    sid = space.scoring_ids[(i * requests + k) % len(space.scoring_ids)]
                    r = h.post("/v1/explanations", json={"scoring_id": sid})
                else:
                    r = h.post(
                        ANNOTATIONS.format(
                            explanation_id=annotate_on[(i * requests + k) % len(annotate_on)]
                        ),
                        json={"verdict": "accepted", "note": f"client {i} request {k}"},
                    )
                out[i].append(time.perf_counter() - t0)
                if r.status_code >= 400:
                    errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return [x for xs in out for x in xs]


def wait_for_jobs(url: str, key: str, timeout: float = 600.0) -> None:
    """Wait until no explanation of the space is queued or running."""
    auth = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers=auth, timeout=60) as h:
        while time.monotonic() < deadline:
            rows = h.get("/v1/explanations").json()["explanations"]
            if not any(e["status"] in ("queued", "running") for e in rows):
                return
            time.sleep(0.5)
    raise RuntimeError("the explanation jobs did not drain")


def scoring_rate(url: str, space: Space, clients: int, seconds: float) -> float:
    """Images per second that ``clients`` threads, one image a request, get scored."""
    done = [0] * clients
    stop = threading.Event()
    image = png(200)

    def client(i: int) -> None:
        auth = {"Authorization": f"Bearer {space.key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as h:
            while not stop.is_set():
                r = h.post(
                    f"/v1/deployments/{space.deployment_id}/predictions",
                    files={"file": ("x.png", image, "image/png")},
                )
                r.raise_for_status()
                done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


@dataclass
class Run:
    """One run's numbers."""

    median_ms: float
    rate: float
    records: int


def one_run(settings: Any, space: Space, args: argparse.Namespace) -> Run:
    """Start the server with ``settings``, warm it, measure, stop it."""
    from limner.store import Database
    from limner.store.audit import count, verify

    with server(settings) as url:
        annotate_on = None
        if has_annotations(url):
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {space.key}"}) as h:
                listed = h.get("/v1/explanations").json()["explanations"]
                annotate_on = [e["id"] for e in listed if e["status"] == "finished"] or None
        audited_latencies(url, space, 4, 6, annotate_on)  # warm: model, pools, the chain's head
        scoring_rate(url, space, 4, 0.5)
        wait_for_jobs(url, space.key)
        latencies = audited_latencies(url, space, args.clients, args.requests, annotate_on)
        wait_for_jobs(url, space.key)
        rate = scoring_rate(url, space, args.clients, args.seconds)
    db = Database(settings.resolved_database_url())
    try:
        with db.session() as s:
            from sqlalchemy import select

            from limner.store import Space as SpaceRow

            space_id = s.scalar(select(SpaceRow.id).where(SpaceRow.name == "bench"))
        records = count(db, str(space_id))
        if settings.audit and not verify(db, str(space_id)).ok:
            raise RuntimeError("the chain does not verify after the run")
    finally:
        db.close()
    return Run(statistics.median(latencies) * 1000, rate, records)


@contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str | None]:
    """The database URL of ``kind`` ("" for SQLite in the data dir; None: not available)."""
    if kind == "SQLite":
        yield ""
        return
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"limner_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _at_once(jobs: list[Any]) -> list[Any]:
    """Run the zero-argument callables in threads at the same time; their results, in order."""
    results: list[Any] = [None] * len(jobs)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as e:  # re-raised below, in the caller's thread
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results


def bootstrap_ratio(
    on: list[list[float]], off: list[list[float]], draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of median(on) / median(off) - 1, resampling each round's requests."""
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(draws):
        a = np.concatenate([rng.choice(x, len(x)) for x in on])
        b = np.concatenate([rng.choice(x, len(x)) for x in off])
        ratios.append(np.median(a) / np.median(b) - 1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def paired_rows(kind: str, args: argparse.Namespace) -> list[str]:
    """The paired measurement of one database: both settings served side by side.

    The two servers are not quite alike even with the same settings: the one started first
    and the one whose clients start first were measured a few percent slower (``--aa``, both
    with the trail off, showed +4.5% [-0.8% to +9.8%] before this was balanced). So the
    servers are started again every second round with their start order swapped, and the
    clients' launch order alternates every round: each position is held by each setting
    equally often."""
    from limner.settings import Settings
    from limner.store import Database, create_key

    with (
        tempfile.TemporaryDirectory() as tmp_on,
        tempfile.TemporaryDirectory() as tmp_off,
        database(kind, Path(tmp_on)) as url_on,
        database(kind, Path(tmp_off)) as url_off,
    ):
        if url_on is None or url_off is None:
            return [f"| {kind} | skipped: set {PG_ENV} | | | | |"]
        settings, keys = {}, {}
        for audit, tmp, url in ((True, tmp_on, url_on), (False, tmp_off, url_off)):
            settings[audit] = Settings(
                data_dir=Path(tmp),
                database_url=url,
                workers=1,
                max_jobs_per_space=1_000_000,
                space_scoring_concurrency=1_000,
                audit=audit and not args.aa,
            )
            db = Database(settings[audit].resolved_database_url())
            db.migrate()
            keys[audit] = create_key(db, "bench", role="admin")
            db.close()
        spaces: dict[bool, Space] = {}
        notes: dict[bool, list[str] | None] = {}
        lat: dict[bool, list[list[float]]] = {True: [], False: []}
        rates: dict[bool, list[float]] = {True: [], False: []}
        for block in range(0, args.rounds, 2):
            starts = (True, False) if block % 4 == 0 else (False, True)
            with server(settings[starts[0]]) as url_a, server(settings[starts[1]]) as url_b:
                urls = dict(zip(starts, (url_a, url_b), strict=True))
                for audit in (True, False):
                    if audit not in spaces:
                        spaces[audit] = prepare(urls[audit], keys[audit], transactions=64)
                    notes[audit] = _warm(urls[audit], spaces[audit])
                for r in range(block, min(block + 2, args.rounds)):
                    order = (True, False) if r % 2 == 0 else (False, True)
                    got = _at_once(
                        [
                            lambda a=a, u=urls: audited_latencies(
                                u[a], spaces[a], args.clients, args.requests, notes[a]
                            )
                            for a in order
                        ]
                    )
                    for a, x in zip(order, got, strict=True):
                        lat[a].append(x)
                    _at_once(
                        [lambda a=a, u=urls: wait_for_jobs(u[a], spaces[a].key) for a in order]
                    )
                    got = _at_once(
                        [
                            lambda a=a, u=urls: scoring_rate(
                                u[a], spaces[a], args.clients, args.seconds
                            )
                            for a in order
                        ]
                    )
                    for a, x in zip(order, got, strict=True):
                        rates[a].append(x)
                    on_ms, off_ms = (1000 * statistics.median(lat[a][-1]) for a in (True, False))
                    print(
                        f"{kind} round {r + 1}: audited median on {on_ms:.2f} ms, "
                        f"off {off_ms:.2f} ms; scoring on "
                        f"{rates[True][-1]:.0f}, off {rates[False][-1]:.0f} images/s",
                        flush=True,
                    )
    med = {a: [1000 * statistics.median(x) for x in lat[a]] for a in (True, False)}
    lat_ratio = [a / b - 1 for a, b in zip(med[True], med[False], strict=True)]
    rate_ratio = [a / b - 1 for a, b in zip(rates[True], rates[False], strict=True)]
    low, high = bootstrap_ratio(lat[True], lat[False])
    pooled = (
        statistics.median([x for xs in lat[True] for x in xs])
        / statistics.median([x for xs in lat[False] for x in xs])
        - 1
    )
    label = f"{kind} (paired{', both off' if args.aa else ''})"
    return [
        f"| {label} | {spread(med[True], '.2f')} | {spread(med[False], '.2f')} "
        f"| {spread([100 * x for x in lat_ratio], '+.1f')}; all requests {100 * pooled:+.1f} "
        f"[95%: {100 * low:+.1f} to {100 * high:+.1f}] "
        f"| {spread(rates[True], '.0f')} / {spread(rates[False], '.0f')} "
        f"| {spread([100 * x for x in rate_ratio], '+.1f')} |"
    ]


def _warm(url: str, space: Space) -> list[str] | None:
    """Warm a (re)started server (model, pools, the chain's head); the finished explanations
    its annotations go round (None: none yet, or no annotation route)."""
    audited_latencies(url, space, 4, 6, None)
    wait_for_jobs(url, space.key)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {space.key}"}, timeout=60
    ) as h:
        listed = h.get("/v1/explanations").json()["explanations"]
    finished = [e["id"] for e in listed if e["status"] == "finished"]
    return finished if finished and has_annotations(url) else None


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)``."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    """Print the markdown table."""
    from limner.settings import Settings
    from limner.store import Database, create_key

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=45, help="audited requests per client")
    parser.add_argument("--seconds", type=float, default=5.0, help="of scoring per run")
    parser.add_argument("--databases", default="SQLite,PostgreSQL")
    parser.add_argument(
        "--paired", action="store_true", help="serve both settings side by side in each round"
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help="with --paired: both servers with the trail off (what the pairing itself adds)",
    )
    args = parser.parse_args()

    rows = []
    load_before = os.getloadavg()[0]
    for kind in args.databases.split(","):
        if args.paired:
            rows += paired_rows(kind, args)
            continue
        with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
            if url is None:
                rows.append(f"| {kind} | skipped: set {PG_ENV} | | | | |")
                continue
            base = Settings(
                data_dir=Path(tmp),
                database_url=url,
                workers=1,
                max_jobs_per_space=1_000_000,
                space_scoring_concurrency=1_000,
            )
            db = Database(base.resolved_database_url())
            db.migrate()
            key = create_key(db, "bench", role="admin")
            db.close()
            with server(base) as served:
                space = prepare(served, key, transactions=64)
                wait_for_jobs(served, key)
            runs: dict[bool, list[Run]] = {True: [], False: []}
            for r in range(args.rounds):
                for audit in (True, False) if r % 2 == 0 else (False, True):
                    run = one_run(base.model_copy(update={"audit": audit}), space, args)
                    runs[audit].append(run)
                    print(
                        f"{kind} round {r + 1} audit {'on ' if audit else 'off'}: "
                        f"median {run.median_ms:.2f} ms, {run.rate:.0f} images/s, "
                        f"{run.records} records",
                        flush=True,
                    )
            on, off = runs[True], runs[False]
            lat_ratio = [a.median_ms / b.median_ms - 1 for a, b in zip(on, off, strict=True)]
            rate_ratio = [a.rate / b.rate - 1 for a, b in zip(on, off, strict=True)]
            rows.append(
                f"| {kind} | {spread([x.median_ms for x in on], '.2f')} "
                f"| {spread([x.median_ms for x in off], '.2f')} "
                f"| {spread([100 * x for x in lat_ratio], '+.1f')} "
                f"| {spread([x.rate for x in on], '.0f')} / {spread([x.rate for x in off], '.0f')} "
                f"| {spread([100 * x for x in rate_ratio], '+.1f')} |"
            )
    print()
    print(
        f"{args.clients} clients, {args.requests} audited requests each per run, "
        f"{args.rounds} rounds (medians over rounds, min-max in brackets); "
        f"{os.cpu_count()} cores, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print()
    print(
        "| database | audited request median, on (ms) | off (ms) | latency overhead (%) "
        "| scoring, on / off (images/s) | scoring change (%) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
