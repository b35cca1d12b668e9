"""The dashboard's finding pages over HTTP: the transactions page's filters, the explanations
list and its filters, explaining a whole selection, downloading RESULTs as JSON Lines."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from ui_helpers import Dashboard, csrf_of, logged_in

from limner.store import Database, create_key
from limner.store.audit import AuditQuery, query
from limner.store.tables import Space


class _Markup(HTMLParser):
    """What the accessibility checks need: inputs and their labels, headers, list items."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.controls: list[str] = []  # ids of visible inputs and selects
        self.unnamed: list[str] = []
        self.labels: set[str] = set()
        self.th_without_scope = 0
        self.loose_li = 0
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            if a.get("id"):
                self.controls.append(str(a["id"]))
            elif not self._in_label and not a.get("aria-label"):
                self.unnamed.append(str(a.get("name")))
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.labels.add(str(a["for"]))
        if tag == "th" and not a.get("scope"):
            self.th_without_scope += 1
        if tag == "li" and not any(t in ("ul", "ol", "menu") for t in self.stack):
            self.loose_li += 1
        if tag not in ("input", "img", "br", "meta", "link", "option"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass


def _check_markup(html: str) -> None:
    m = _Markup()
    m.feed(html)
    assert m.controls, "no form controls"
    assert not [c for c in m.controls if c not in m.labels], "inputs without a label"
    assert not m.unnamed, m.unnamed
    assert m.th_without_scope == 0 and m.loose_li == 0


def _rows(html: str, attr: str = "data-scoring-id") -> set[str]:
    return set(re.findall(rf'<tr {attr}="([^"]+)"', html))


def _space_id(dashboard: Dashboard) -> str:
    db = Database(dashboard.settings.resolved_database_url())
    try:
        with db.session() as s:
            return str(s.query(Space.id).filter(Space.name == "default").one()[0])
    finally:
        db.close()


def _audit(dashboard: Dashboard, action: str) -> list:
    db = Database(dashboard.settings.resolved_database_url())
    try:
        return query(db, _space_id(dashboard), AuditQuery(action=action))[0]
    finally:
        db.close()


@pytest.fixture(scope="module")
def setup(dashboard: Dashboard, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Feedback on the first photo, a fourth photo scored from a file with a case id."""
    from skimage import data

    from limner.imaging import encode_png

    folder: Path = tmp_path_factory.mktemp("photos")
    (folder / "rocket-17.png").write_bytes(encode_png(data.rocket()))
    with dashboard.client() as client:
        sub = client.subscriptions.get(dashboard.subscription_id)
        txs = {t["scoring_id"]: t for t in sub.transactions()}
        first = txs[dashboard.scoring_ids[0]]
        wrong = "tabby" if first["label"] != "tabby" else "tiger cat"
        client.transactions.set_feedback(first["scoring_id"], wrong)
        second = txs[dashboard.scoring_ids[1]]
        client.transactions.set_feedback(second["scoring_id"], second["label"])
        dep_id = str(sub.deployment_id)
        rocket = client.score(dep_id, folder / "rocket-17.png", external_id="case-17")
    db = Database(dashboard.settings.resolved_database_url())
    try:
        viewer = create_key(db, "default", role="viewer", name="Val viewer")
    finally:
        db.close()
    return {
        "labels": {sid: txs[sid]["label"] for sid in dashboard.scoring_ids},
        "rocket": str(rocket.scoring_id),
        "wrong": wrong,
        "viewer": viewer,
        "dep_id": dep_id,
    }


def test_the_transactions_page_filters_and_shows_the_new_columns(
    dashboard: Dashboard, setup: dict
) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    path = f"/ui/subscriptions/{dashboard.subscription_id}"
    everything = http.get(path)
    assert everything.status_code == 200
    _check_markup(everything.text)
    assert _rows(everything.text) == {*dashboard.scoring_ids, setup["rocket"]}
    assert "rocket-17.png" in everything.text and "case-17" in everything.text
    assert 'href="/ui/explanations"' in everything.text  # the nav link
    first, second, third = dashboard.scoring_ids
    label = setup["labels"][first]
    checks = [
        ({"label": label}, {s for s, lab in setup["labels"].items() if lab == label}),
        ({"true_label": setup["wrong"]}, {first}),
        ({"misclassified": "true"}, {first}),
        ({"misclassified": "false"}, {second}),
        ({"external_id": "case-17"}, {setup["rocket"]}),
        ({"explained": "true"}, set()),
        ({"explained": "false"}, {first, second, third, setup["rocket"]}),
        ({"since": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}, set()),
        (
            {"until": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")},
            {first, second, third, setup["rocket"]},
        ),
    ]
    for params, expected in checks:
        page = http.get(path, params=params)
        assert page.status_code == 200, (params, page.text)
        assert _rows(page.text) == expected, params
        for name, value in params.items():  # the form shows what the URL says
            assert f'name="{name}"' in page.text and value in page.text, params
    misclassified = http.get(path, params={"misclassified": "true"}).text
    assert "misclassified</span>" in misclassified and setup["wrong"] in misclassified


def test_bad_filters_show_a_readable_message(dashboard: Dashboard, setup: dict) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    path = f"/ui/subscriptions/{dashboard.subscription_id}"
    for params, words in (
        ({"misclassified": "maybe"}, "misclassified"),
        ({"since": "last tuesday"}, "since"),
        ({"label": "no such label"}, "label"),
        ({"colour": "red"}, "colour"),
        ({"since": "2025-02-01T00:00", "until": "2025-01-01T00:00"}, "since"),
    ):
        page = http.get(path, params=params)
        assert page.status_code == 422, params
        assert "text/html" in page.headers["content-type"]
        assert "This filter cannot be used" in page.text and words in page.text, params
        assert "Traceback" not in page.text
    for params, words in (
        ({"status": "done"}, "status"),
        ({"max_r2": "high"}, "max_r2"),
        ({"class": "no such class"}, "class"),
        ({"stat": "failed"}, "stat"),
    ):
        page = http.get("/ui/explanations", params=params)
        assert page.status_code == 422 and words in page.text, params
        assert "This filter cannot be used" in page.text
        download = http.get("/ui/explanations/export.jsonl", params=params)
        assert download.status_code == 422 and "Cannot download" in download.text


def test_explain_all_selected_lands_on_the_explanations_it_queued(
    dashboard: Dashboard, setup: dict
) -> None:
    viewer = logged_in(dashboard.url, setup["viewer"])  # viewers may explain
    path = f"/ui/subscriptions/{dashboard.subscription_id}"
    first = dashboard.scoring_ids[0]
    selection = {"misclassified": "true"}
    page = viewer.get(path, params=selection)
    assert "Explain all 1 selected" in page.text
    assert viewer.post(f"{path}/explain-selected", data=selection).status_code == 403  # no CSRF
    answer = viewer.post(f"{path}/explain-selected", data={**selection, "csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    target = answer.headers["location"]
    assert target.startswith("/ui/explanations?") and "queued=1" in target
    listing = viewer.get(target)
    assert listing.status_code == 200
    _check_markup(listing.text)
    ids = _rows(listing.text, "data-explanation-id")
    assert len(ids) == 1 and "Queued 1 explanation" in listing.text
    with dashboard.client() as client:
        exp = client.explanations.get(ids.pop()).wait(timeout=300)
    assert exp.scoring_id == first and exp.data["requested_by"] == "Val viewer"
    records = [r for r in _audit(dashboard, "explanation.request_many") if r.role == "viewer"]
    assert records and records[0].detail["via"] == "dashboard"
    assert records[0].detail["explanation_ids"] == [exp.id]
    # now explained: the explained filter sees it
    tenant = logged_in(dashboard.url, dashboard.key)
    assert _rows(tenant.get(path, params={"explained": "true"}).text) == {first}


def test_the_explanations_page_filters(dashboard: Dashboard, setup: dict) -> None:
    with dashboard.client() as client:
        occlusion = client.explanations.create(
            dashboard.scoring_ids[1], method="occlusion", classes=[0]
        ).wait(timeout=300)
        listed = client.explanations.list(limit=100)
    http = logged_in(dashboard.url, dashboard.key)
    everything = http.get("/ui/explanations")
    _check_markup(everything.text)
    all_ids = _rows(everything.text, "data-explanation-id")
    assert occlusion.id in all_ids and all_ids == {e.id for e in listed}
    results = {e.id: e.data["result"] for e in listed if e.status == "finished"}
    settled = {
        i for i, r in results.items() if all(x["settled"] is True for x in r["explanations"])
    }
    unsettled = {
        i for i, r in results.items() if any(x["settled"] is False for x in r["explanations"])
    }
    warned = {i for i, r in results.items() if any(x["warnings"] for x in r["explanations"])}
    lowest = {i: min(x["fit_r2"] for x in r["explanations"]) for i, r in results.items()}
    cut = max(lowest.values()) + 0.001
    checks = [
        ({"status": "finished"}, set(results)),
        ({"status": "failed"}, set()),
        ({"method": "occlusion"}, {occlusion.id}),
        ({"class": "0"}, {occlusion.id}),
        ({"class": "tench"}, {occlusion.id}),  # class 0 of ImageNet
        ({"deployment_id": setup["dep_id"]}, all_ids),
        ({"deployment_id": "0" * 32}, set()),
        ({"requested_by": "Val viewer"}, all_ids - {occlusion.id}),
        ({"settled": "true"}, settled),
        ({"settled": "false"}, unsettled - {occlusion.id}),
        ({"warnings": "true"}, warned),
        ({"warnings": "false"}, set(results) - warned),
        ({"max_r2": f"{cut:.4f}"}, set(results)),
        ({"max_r2": repr(min(lowest.values()))}, set()),
        ({"since": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}, set()),
        ({"scoring_id": dashboard.scoring_ids[1]}, {occlusion.id}),
    ]
    for params, expected in checks:
        page = http.get("/ui/explanations", params=params)
        assert page.status_code == 200, (params, page.text)
        assert _rows(page.text, "data-explanation-id") == expected, params
    link = http.get("/ui/explanations", params={"method": "occlusion"}).text
    assert 'href="/ui/explanations/export.jsonl?method=occlusion"' in link
    assert "Download RESULTs (JSON Lines)" in link


def test_download_results_as_json_lines_marks_them_exported(
    dashboard: Dashboard, setup: dict
) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    got = http.get("/ui/explanations/export.jsonl", params={"method": "occlusion"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in got.headers["content-disposition"]
    lines = [json.loads(line) for line in got.text.splitlines()]
    assert len(lines) == 1 and lines[0]["result"]["method"] == "occlusion"
    with dashboard.client() as client:
        exp = client.explanations.get(lines[0]["explanation_id"])
    assert exp.data["exported_at"] is not None
    records = [r for r in _audit(dashboard, "explanation.export") if r.outcome == "ok"]
    assert records and records[0].detail["count"] == 1 and records[0].detail["via"] == "dashboard"


def test_another_space_finds_nothing_here(dashboard: Dashboard, setup: dict) -> None:
    other = logged_in(dashboard.url, dashboard.new_key("elsewhere"))
    path = f"/ui/subscriptions/{dashboard.subscription_id}"
    assert other.get(path, params={"misclassified": "true"}).status_code == 404
    listing = other.get("/ui/explanations")
    assert listing.status_code == 200 and _rows(listing.text, "data-explanation-id") == set()
    assert other.get("/ui/explanations/export.jsonl").text == ""
    csrf = csrf_of(listing.text)
    assert other.post(f"{path}/explain-selected", data={"csrf": csrf}).status_code == 404
    assert httpx.get(dashboard.url + "/ui/explanations").status_code == 303  # no session
