"""Four 40-megapixel photos explained at once by a real ``limner serve`` stay within its idle
memory plus 12 bytes a pixel for each.

The photos are smooth colour fields (a small random image blown up), so each upload is a JPEG
of a few MB under the 20 MB body limit, yet decodes to 7600×5200 = 39.5 megapixels. The
server's peak resident memory is read from ``/proc/<pid>/status`` (``VmHWM``, reset through
``clear_refs`` once the server is warm and idle). Linux only.
"""

from __future__ import annotations

import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from svc_helpers import FAST, free_port, start_server

from limner.client import APIClient

WIDTH, HEIGHT = 7600, 5200
#: The budget of one explanation in flight, per input pixel.
BYTES_PER_PIXEL = 12


def _smooth_jpeg(seed: int) -> bytes:
    small = np.random.default_rng(seed).integers(0, 256, (13, 19, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_four_40_megapixel_explanations_at_once_stay_within_12_bytes_a_pixel_each(
    tmp_path: Path, photo_png: bytes
) -> None:
    port = free_port()
    proc, key = start_server(tmp_path, port, workers=4)
    try:
        with APIClient(f"http://127.0.0.1:{port}", api_key=key) as client:
            dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
            sub = client.subscriptions.create(deployment_id=dep.id)
            sub.enable_explainability(**FAST)
            # warm: the model loaded, one job run, the worker threads started
            client.explanations.create(str(client.score(dep, photo_png).scoring_id)).wait(120)
            photos = [_smooth_jpeg(seed) for seed in range(4)]
            assert all(len(p) < 20 * 1024 * 1024 for p in photos)
            idle = _status(proc.pid, "VmRSS")
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the peak from here on

            ids = [str(client.score(dep, p).scoring_id) for p in photos]
            jobs = [client.explanations.create(i) for i in ids]
            with ThreadPoolExecutor(4) as pool:
                done = list(pool.map(lambda j: j.wait(600), jobs))
            peak = _status(proc.pid, "VmHWM")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    starts = [j.data["started_at"] for j in done]
    ends = [j.data["finished_at"] for j in done]
    assert max(starts) < min(ends), "the four explanations were in flight at once"
    assert all(j.result and j.result["width"] == WIDTH for j in done)
    pixels = WIDTH * HEIGHT
    print(
        f"idle {idle / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB: "
        f"{(peak - idle) / pixels:.1f} bytes a pixel above idle for 4 × {pixels / 1e6:.1f} MP"
    )
    assert peak - idle <= 4 * BYTES_PER_PIXEL * pixels
