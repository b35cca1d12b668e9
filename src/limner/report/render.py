"""Render explanations as one self-contained HTML document, and that HTML as PDF.

Every image is embedded as a ``data:`` URI and the stylesheet is inline, so the HTML makes no
request when opened, and the PDF is WeasyPrint's rendering of the same HTML, with a URL fetcher
that refuses anything but ``data:`` URIs. Everything from the user (names, notes, labels, file
names) is escaped by the template engine.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from limner.report.model import ReportExplanation
from limner.report.view import item_view, when


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("limner.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    return env


def render_html(items: list[ReportExplanation], *, title: str, generated_at: datetime) -> str:
    """The report of ``items`` (in that order) as one self-contained HTML document."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        generated_at=when(generated_at),
        items=[item_view(item, i) for i, item in enumerate(items, 1)],
    )


def render_pdf(html: str) -> bytes:
    """``html`` (as :func:`render_html` gives it) rendered as PDF, A4, fetching nothing but
    ``data:`` URIs."""
    from weasyprint import HTML

    pdf = HTML(string=html, url_fetcher=_data_only_fetcher()).write_pdf()
    assert pdf is not None  # no target given: the bytes are returned
    return bytes(pdf)


def _refuse_unless_data(url: str) -> None:
    if not url.lower().startswith("data:"):
        raise ValueError(f"the report fetches nothing but data: URIs, not {url[:80]!r}")


def _data_only_fetcher() -> Any:
    """A WeasyPrint URL fetcher for ``data:`` URIs only: a ``URLFetcher`` subclass where
    WeasyPrint has that class, else a function around its default fetcher."""
    from weasyprint import urls

    if hasattr(urls, "URLFetcher"):

        class DataOnly(urls.URLFetcher):
            def fetch(self, url: str, headers: Any = None) -> Any:
                _refuse_unless_data(url)
                return super().fetch(url, headers)

        return DataOnly(allowed_protocols=("data",))

    def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
        _refuse_unless_data(url)
        return urls.default_url_fetcher(url, *args, **kwargs)

    return fetch
