"""Deterministic methods claim no certainty they do not have: no zero-width intervals, and
``settled`` null (not applicable) rather than true; every reader of the RESULT copes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import limner
from limner.imaging.figure import caption_lines
from limner.models import InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel
from limner.report import ReportExplanation, render_html
from patch_models import brightness_model, patch_image

GRID = {"segmentation": "grid", "segments": 4}


def _tiny_cnn() -> TorchModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    meta = ModelMetadata(
        labels=["a", "b"],
        input=InputSpec(width=32, height=32, layout="NCHW"),
        output="logits",
        name="tiny",
    )
    return TorchModel(net, meta)


@pytest.fixture(scope="module")
def deterministic() -> dict[str, dict]:
    """RESULTs (as JSON gives them back) of every deterministic method."""
    image = patch_image()
    bright = brightness_model(64)
    tiny = _tiny_cnn()
    results = {
        "integrated-gradients": limner.explain(image, tiny, method="integrated-gradients", **GRID),
        "gradcam": limner.explain(image, tiny, method="gradcam", **GRID),
        "occlusion": limner.explain(image, bright, method="occlusion", **GRID),
        # 2^4 coalitions within the budget: exact Shapley values
        "exhaustive kernelshap": limner.explain(image, bright, samples=64, **GRID),
    }
    return {name: json.loads(json.dumps(e.to_dict())) for name, e in results.items()}


@pytest.mark.parametrize(
    "name", ["integrated-gradients", "gradcam", "occlusion", "exhaustive kernelshap"]
)
def test_a_deterministic_result_has_no_interval_and_no_settled_verdict(
    deterministic: dict[str, dict], name: str
) -> None:
    result = deterministic[name]
    assert result["stop_reason"] in ("exact", "budget")
    for entry in result["explanations"]:
        assert "settled" in entry and entry["settled"] is None
        assert entry["ties"] == []
        assert not any("not settled" in w for w in entry["warnings"])
        assert entry["regions"]
        for region in entry["regions"]:
            assert region["interval"] is None and region["stderr"] is None
            assert np.isfinite(region["weight"])


def test_a_sampled_method_still_carries_real_intervals() -> None:
    result = limner.explain(patch_image(), brightness_model(64), method="lime", samples=200, **GRID)
    entry = result.to_dict()["explanations"][0]
    assert isinstance(entry["settled"], bool)
    widths = [r["interval"][1] - r["interval"][0] for r in entry["regions"]]
    assert all(w >= 0 for w in widths) and max(widths) > 0
    assert all(r["stderr"] is not None for r in entry["regions"])


def test_captions_say_deterministic_not_settled(deterministic: dict[str, dict]) -> None:
    entry = deterministic["integrated-gradients"]["explanations"][0]
    head = caption_lines(entry)[0]
    assert "deterministic" in head and "settled" not in head.replace("to settle", "")
    assert "NOT settled" in caption_lines({**entry, "settled": False})[0]
    assert "top regions settled" in caption_lines({**entry, "settled": True})[0]


def test_the_report_explains_a_deterministic_class(deterministic: dict[str, dict]) -> None:
    result = deterministic["occlusion"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    ci = result["explanations"][0]["class_index"]
    item = ReportExplanation(
        explanation_id="ex_1",
        status="finished",
        method=result["method"],
        result=result,
        scoring_id="tx-1",
        label="bright",
        probability=0.9,
        deployment="patch",
        artifact_sha256=None,
        image=buf.getvalue(),
        panes={ci: {"positive": buf.getvalue(), "labels": buf.getvalue()}},
        requested_by="Ann",
        requested_role="tenant",
        requested_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    html = render_html([item], title="t", generated_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert "the method is deterministic" in html
    assert "not settled" not in html and ">settled<" not in html
    assert "Sign settled" not in html  # no interval column without intervals
    # the labels pane is data: never drawn as a figure
    assert 'alt="positive pane"' in html and 'alt="labels pane"' not in html


def test_the_cli_table_does_not_call_a_deterministic_ranking_unsettled(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(patch_image()).resize((96, 96)).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "explain", str(image), "--method", "occlusion",
         "--segmentation", "grid", "--segments", "4", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(not settled)" not in proc.stdout and "cat" in proc.stdout
