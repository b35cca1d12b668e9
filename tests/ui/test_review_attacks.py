"""The dashboard's review routes (annotations, report downloads) beside their attacks: another
space's session gets the not-found page and changes nothing; an oversized note or a forged
form is refused without a 500."""

from __future__ import annotations

import pytest
from ui_helpers import FAST, Dashboard, csrf_of, logged_in

from limner.store import Database
from limner.store.audit import AuditQuery, query
from limner.store.keys import space_for_key


@pytest.fixture(scope="module")
def explanation_id(dashboard: Dashboard) -> str:
    with dashboard.client() as client:
        return client.explanations.create(dashboard.scoring_ids[0], **FAST).wait(180).id


def test_the_owner_annotates_and_downloads(dashboard: Dashboard, explanation_id: str) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/explanations/{explanation_id}")
    sent = http.post(
        f"/ui/explanations/{explanation_id}/annotations",
        data={"csrf": csrf_of(page.text), "note": "looks right", "verdict": "accepted"},
    )
    assert sent.status_code == 303 and sent.headers["location"].endswith("review=saved#review")
    shown = http.get(f"/ui/explanations/{explanation_id}").text
    assert "looks right" in shown and "verdict-accepted" in shown
    pdf = http.get(f"/ui/explanations/{explanation_id}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    db = Database(dashboard.settings.resolved_database_url())
    space = space_for_key(db, dashboard.key)
    assert space is not None
    actions = {r.action for r in query(db, space.id, AuditQuery(target=explanation_id))[0]}
    db.close()
    assert {"annotation.create", "explanation.export"} <= actions


def test_another_space_cannot_annotate_or_download(
    dashboard: Dashboard, explanation_id: str
) -> None:
    with dashboard.client() as client:
        before = client.explanations.get(explanation_id).annotations()
    intruder = logged_in(dashboard.url, dashboard.new_key("intruders"))
    csrf = csrf_of(intruder.get("/ui/subscriptions").text)
    sent = intruder.post(
        f"/ui/explanations/{explanation_id}/annotations",
        data={"csrf": csrf, "note": "mine now", "verdict": "rejected"},
    )
    assert sent.status_code == 404
    for fmt in ("pdf", "html"):
        got = intruder.get(f"/ui/explanations/{explanation_id}/report.{fmt}")
        assert got.status_code == 404 and b"%PDF" not in got.content
    with dashboard.client() as client:
        assert client.explanations.get(explanation_id).annotations() == before


def test_forged_oversized_and_unknown_forms_are_refused(
    dashboard: Dashboard, explanation_id: str
) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    url = f"/ui/explanations/{explanation_id}/annotations"
    assert http.post(url, data={"csrf": "forged", "note": "x"}).status_code == 403
    csrf = csrf_of(http.get(f"/ui/explanations/{explanation_id}").text)
    huge = http.post(url, data={"csrf": csrf, "note": "x" * 10_001})
    assert huge.status_code == 422
    odd = http.post(url, data={"csrf": csrf, "note": "", "verdict": "fine"})
    assert odd.status_code == 303 and "review=invalid" in odd.headers["location"]
    assert http.get(f"/ui/explanations/{explanation_id}/report.exe").status_code == 422
