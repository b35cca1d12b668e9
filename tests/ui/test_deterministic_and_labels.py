"""A deterministic method through the real service: the dashboard claims no settled ranking, and
the region label map is a pane like the others (REST, the client), kept to its own space."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image
from ui_helpers import Dashboard, logged_in


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_occlusion_shows_no_settled_badge_and_serves_its_label_map(
    dashboard: Dashboard, tmp_path
) -> None:
    with dashboard.client() as client:
        exp = client.explanations.create(
            dashboard.scoring_ids[0], method="occlusion", segmentation="grid", segments=6
        ).wait(timeout=300)
        entry = exp.result["explanations"][0]
        ci = int(entry["class_index"])
        assert entry["settled"] is None
        assert all(r["interval"] is None for r in entry["regions"])
        assert entry["images"]["labels"].endswith(f"/images/{ci}/labels.png")
        labels = np.asarray(Image.open(io.BytesIO(exp.image("labels", ci))))
        saved = exp.save(tmp_path / "saved")
        assert any(p.name == f"{ci}-espresso-labels.png" for p in saved.iterdir())
    assert labels.dtype == np.uint16 and labels.shape == (exp.result["height"], exp.result["width"])
    assert set(np.unique(labels)) == {r["id"] for r in entry["regions"]}
    # the REST route serves the same bytes; another space's key does not see them
    path = f"/v1/explanations/{exp.id}/images/{ci}/labels.png"
    mine = httpx.get(dashboard.url + path, headers=_auth(dashboard.key))
    assert mine.status_code == 200 and mine.headers["content-type"] == "image/png"
    other = httpx.get(dashboard.url + path, headers=_auth(dashboard.new_key("elsewhere")))
    assert other.status_code == 404
    bad = httpx.get(
        dashboard.url + f"/v1/explanations/{exp.id}/images/{ci}/pixels.png",
        headers=_auth(dashboard.key),
    )
    assert bad.status_code == 422
    page = logged_in(dashboard.url, dashboard.key).get(f"/ui/explanations/{exp.id}")
    assert page.status_code == 200
    assert "deterministic · no intervals" in page.text
    assert "top regions settled" not in page.text and "top regions not settled" not in page.text
