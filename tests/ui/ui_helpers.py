"""Helpers of the dashboard tests: the running service, logging in over HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

from limner.client import APIClient
from limner.settings import Settings
from limner.store import Database, create_key

#: Explanation settings that keep the tests quick.
FAST = {"method": "kernelshap", "samples": 64, "segmentation": "grid", "segments": 8}


@dataclass
class Dashboard:
    """A running service, a key of space ``default``, and what was scored through it."""

    url: str
    key: str
    settings: Settings
    subscription_id: str = ""
    scoring_ids: list[str] = field(default_factory=list)

    def new_key(self, space: str) -> str:
        """A key of another space."""
        db = Database(self.settings.resolved_database_url())
        try:
            return create_key(db, space)
        finally:
            db.close()

    def client(self, key: str | None = None) -> APIClient:
        """The Python client with a key (this space's by default)."""
        return APIClient(self.url, api_key=key or self.key)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def logged_in(url: str, key: str) -> httpx.Client:
    """An httpx client with a dashboard session of ``key``."""
    http = httpx.Client(base_url=url, timeout=30)
    page = http.get("/ui/login")
    response = http.post("/ui/login", data={"key": key, "csrf": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return http
