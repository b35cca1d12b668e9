"""Helpers of the dashboard tests: the running service, logging in over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from limner.client import APIClient
from limner.settings import Settings
from limner.store import Database, create_key

#: Debian's Chromium, driven by Playwright (never `playwright install`).
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

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


@contextmanager
def chromium_page(**context_options: Any) -> Iterator[Any]:
    """A Chromium page on a laptop-sized screen (``context_options`` go to the context)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, **context_options)
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
