"""``limner demo`` on a clean data dir: exit 0, panes of every photo, the table, the URL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from limner.cli.demo import PHOTOS


@pytest.mark.slow
def test_demo_writes_panes_table_and_dashboard_url(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "LIMNER_DATABASE_URL": "", "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    lines = proc.stdout.splitlines()
    assert any("engine s" in line for line in lines)
    wall = re.search(r"(\d+) explanations in ([\d.]+) s wall time, (\d+) at once", proc.stdout)
    assert wall is not None and int(wall.group(1)) == len(PHOTOS)
    engine = []
    for name, _ in PHOTOS:
        folder = out / name
        result = json.loads((folder / "result.json").read_text())
        entry = result["explanations"][0]
        for kind in ("positive", "negative", "heatmap"):
            assert (folder / entry["images"][kind]).read_bytes().startswith(b"\x89PNG")
        row = next(
            line for line in lines if line.split("│")[1:2] and line.split("│")[1].strip() == name
        )
        shown = float(row.split("│")[-2])
        assert shown == round(result["seconds"], 1)  # the explanation's own engine seconds
        engine.append(result["seconds"])
        assert entry["label"] in proc.stdout
    assert max(engine) <= float(wall.group(2))
    assert "Egyptian cat" in proc.stdout and "espresso" in proc.stdout
    assert "/ui" in proc.stdout and "http://127.0.0.1:" in proc.stdout
    # the object detector: the face box of the astronaut photo, explained
    assert "Object detection: opencv-faces sees a face" in proc.stdout
    face = json.loads((out / "astronaut-face" / "result.json").read_text())
    assert face["detection"]["label"] == "face" and face["detection"]["index"] == 0
    assert (out / "astronaut-face" / face["explanations"][0]["images"]["positive"]).is_file()
    assert "Traceback" not in proc.stderr
