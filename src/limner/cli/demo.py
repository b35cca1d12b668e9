"""``limner demo``: the whole product on the built-in model and bundled photos.

Starts the service in-process on a free loopback port, deploys ``efficientnet-lite0``,
subscribes it, scores scikit-image's sample photos (each becomes a transaction), explains every
transaction in parallel through the API, writes the panes under ``--out`` and prints a table.
Then the object detector: it deploys the built-in face detector ``opencv-faces``, scores the
astronaut photo and explains the face box it finds (panes under ``--out/astronaut-face``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from limner.cli.common import console, err_console, progress_bar

if TYPE_CHECKING:
    from limner.client import APIClient

#: Bundled scikit-image photos: (name, loader attribute).
PHOTOS = (
    ("chelsea", "chelsea"),
    ("coffee", "coffee"),
    ("astronaut", "astronaut"),
    ("rocket", "rocket"),
    ("camera", "camera"),
    ("motorcycle", "stereo_motorcycle"),
)
#: How the demo's explanations are made (a minute on two CPU cores for all photos).
EXPLAINABILITY = {"method": "kernelshap", "samples": 256, "segmentation": "slic", "segments": 24}


@dataclass
class Row:
    """One line of the demo's table."""

    name: str
    label: str
    probability: float
    regions: str
    seconds: float


def sample_photos() -> list[tuple[str, np.ndarray]]:
    """The bundled sample photos as RGB uint8 arrays."""
    from skimage import data

    from limner.imaging import decode_image

    out = []
    for name, attr in PHOTOS:
        image = getattr(data, attr)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        out.append((name, decode_image(np.asarray(image))))
    return out


def run_demo(out: Path, *, serve: bool, port: int) -> None:
    """Run the demo; with ``serve``, keep the service up until interrupted."""
    from limner.client import APIClient
    from limner.service import EmbeddedServer, create_app
    from limner.settings import Settings
    from limner.store import Database, create_key

    data_dir = Path(tempfile.mkdtemp(prefix="limner-demo-"))
    settings = Settings(data_dir=data_dir, database_url="", workers=len(PHOTOS))
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "demo", role="admin")  # the operator's own service
    db.close()
    server = EmbeddedServer(create_app(settings), port=port).start()
    try:
        with APIClient(server.url, api_key=key) as client:
            run = _walkthrough(client, out, settings.workers)
            sub_id = client.subscriptions.list()[0].id
            box = detector_walkthrough(client, out)
        _print_table(run, out)
        console.print(box, highlight=False)
        if serve:
            link = _login_link(server.url, key, f"/ui/subscriptions/{sub_id}")
            console.print(
                f"Dashboard (logs you in once, within 15 minutes): [bold]{link}[/]",
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                f"Later: {server.url}/ui with the API key (space 'demo'): {key}",
                highlight=False,
                soft_wrap=True,
            )
            console.print("Serving until Ctrl-C.")
            while True:
                time.sleep(3600)
        console.print(f"Dashboard: [bold]{server.url}/ui[/] (run with --serve to keep it up)")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _login_link(url: str, key: str, next_path: str) -> str:
    """A one-time dashboard link that logs a browser in and opens ``next_path``."""
    import httpx

    response = httpx.post(
        f"{url}/ui/login-links",
        headers={"Authorization": f"Bearer {key}"},
        json={"next": next_path},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["url"])


@dataclass
class Run:
    """The demo's explanations: a row each, and the wall time of all of them together."""

    rows: list[Row]
    wall_seconds: float
    workers: int


def _walkthrough(client: APIClient, out: Path, workers: int) -> Run:
    from limner.imaging import encode_png

    photos = sample_photos()
    with progress_bar("Deploying efficientnet-lite0", None):
        dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(**EXPLAINABILITY)
    scorings = []
    with progress_bar("Scoring", len(photos)) as update:
        for i, (_, image) in enumerate(photos):
            scorings.append(client.score(dep, image))
            update(i + 1, len(photos))
    started = time.perf_counter()
    jobs = [client.explanations.create(str(s.scoring_id)) for s in scorings]
    with progress_bar("Explaining", len(jobs) * 100) as update:
        while True:
            for job in jobs:
                if not job.done:
                    job.refresh()
            update(int(sum(100 if j.done else j.progress * 100 for j in jobs)), len(jobs) * 100)
            if all(j.done for j in jobs):
                break
            time.sleep(0.25)
    wall = time.perf_counter() - started
    rows = []
    for (name, image), job in zip(photos, jobs, strict=True):
        job.wait(timeout=0)
        folder = job.save(out / name)
        (folder / "image.png").write_bytes(encode_png(image))
        rows.append(_row(name, job.result or {}))
    return Run(rows, wall, workers)


#: The demo's object detector, and the photo it explains a box of.
DETECTOR, DETECTOR_PHOTO = "opencv-faces", "astronaut"


def detector_walkthrough(client: APIClient, out: Path) -> str:
    """Deploy the built-in face detector as ``faces``, score the astronaut photo, explain the
    best box; write its panes (the box outlined) under ``out/astronaut-face``; one line on it."""
    from limner.imaging import encode_png

    image = dict(sample_photos())[DETECTOR_PHOTO]
    with progress_bar(f"Deploying the face detector {DETECTOR}", None):
        dep = client.deployments.create(name="faces", model=DETECTOR)
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(**EXPLAINABILITY)
    scored = client.score(dep, image)
    if not scored.detections:  # pragma: no cover - the cascade finds her face
        return f"{DETECTOR} found no face in the {DETECTOR_PHOTO} photo"
    with progress_bar("Explaining the face box", None):
        job = client.explanations.create(str(scored.scoring_id), box=0).wait(timeout=600)
    folder = job.save(out / f"{DETECTOR_PHOTO}-face")
    (folder / "image.png").write_bytes(encode_png(image))
    result = job.result or {}
    found, entry = result["detection"], result["explanations"][0]
    top = " ".join(f"#{r['id']} {r['share']:.0f}%" for r in entry["regions"][:3] if r["weight"] > 0)
    corners = ", ".join(f"{v:.0f}" for v in found["box"])
    return (
        f"Object detection: {DETECTOR} sees a {found['label']} ({found['score']:.0%}) at "
        f"[{corners}] in {DETECTOR_PHOTO}; the regions that made it see the box: {top or '-'} "
        f"(panes in {folder}/, {result['seconds']:.1f} s)"
    )


def _row(name: str, result: dict[str, Any]) -> Row:
    entry = result["explanations"][0]
    top = " ".join(f"#{r['id']} {r['share']:.0f}%" for r in entry["regions"][:3] if r["weight"] > 0)
    return Row(name, entry["label"], entry["probability"], top or "-", result["seconds"])


def _print_table(run: Run, out: Path) -> None:
    import os

    from rich.table import Table

    cores = os.cpu_count() or 1
    table = Table(
        title=f"limner demo — panes in {out}/",
        caption=f"{len(run.rows)} explanations in {run.wall_seconds:.1f} s wall time, "
        f"{run.workers} at once on {cores} CPU cores; engine s: each explanation's own time "
        "in the engine (RESULT seconds), cores shared",
    )
    table.add_column("image")
    table.add_column("label")
    table.add_column("probability", justify="right")
    table.add_column("top regions (share)")
    table.add_column("engine s", justify="right")
    for r in run.rows:
        table.add_row(r.name, r.label, f"{r.probability:.1%}", r.regions, f"{r.seconds:.1f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("limner-demo"), "--out", help="Where the panes go."),
        serve: bool = typer.Option(False, "--serve", help="Keep the service up afterwards."),
        port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (0: a free one)."),
    ) -> None:
        """Deploy the built-in model, score sample photos, explain each, write the panes."""
        started = time.perf_counter()
        run_demo(out, serve=serve, port=port)
        err_console.print(f"Done in {time.perf_counter() - started:.0f} s.")
