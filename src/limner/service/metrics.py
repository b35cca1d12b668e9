"""Prometheus metrics of one service instance, every series labelled with its space.

``GET /metrics`` needs a key and shows a tenant only the series of its own space (an admin key
sees them all); :func:`serve_operator_metrics` serves every series without a key on a separate
port the operator chooses (``LIMNER_METRICS_PORT``), for a scraper on the operator's network.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

#: The ``space`` label of requests that carried no valid key.
NO_SPACE = ""


class Metrics:
    """Counters and histograms in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "limner_http_requests_total",
            "HTTP requests by space, method, route and status",
            ["space", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "limner_http_request_seconds",
            "HTTP request latency by space and route",
            ["space", "route"],
            registry=self.registry,
        )
        self.scored = Counter(
            "limner_scored_images_total",
            "Images scored",
            ["space", "deployment"],
            registry=self.registry,
        )
        self.transactions = Counter(
            "limner_transactions_total", "Transactions logged", ["space"], registry=self.registry
        )
        self.explanation_seconds = Histogram(
            "limner_explanation_seconds",
            "Seconds an explanation job ran",
            ["space"],
            buckets=(0.5, 1, 2, 5, 10, 20, 60, 120, 300),
            registry=self.registry,
        )

    def explanation_done(self, space_id: str, seconds: float) -> None:
        """Record a finished or failed explanation job of ``space_id``."""
        self.explanation_seconds.labels(space_id).observe(seconds)

    def render(self, space_id: str | None = None) -> bytes:
        """The text exposition format: every series, or only those of ``space_id``."""
        if space_id is None:
            return generate_latest(self.registry)
        return generate_latest(_OneSpace(self.registry, space_id))  # type: ignore[arg-type]


class _OneSpace:
    """A registry view with only the samples whose ``space`` label is one space."""

    def __init__(self, registry: CollectorRegistry, space_id: str) -> None:
        self.registry = registry
        self.space_id = space_id

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            kept = _only(family.samples, self.space_id)
            clone = Metric(family.name, family.documentation, family.type, family.unit)
            clone.samples = kept
            yield clone


def _only(samples: Iterable[Any], space_id: str) -> list[Any]:
    return [s for s in samples if s.labels.get("space") == space_id]


def serve_operator_metrics(metrics: Metrics, host: str, port: int) -> Any:
    """Serve every series without a key on ``host:port`` (a daemon thread); the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
