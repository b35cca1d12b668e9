"""Prometheus metrics of one service instance (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """Counters and histograms in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "limner_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "limner_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
        )
        self.scored = Counter(
            "limner_scored_images_total", "Images scored", ["deployment"], registry=self.registry
        )
        self.transactions = Counter(
            "limner_transactions_total", "Transactions logged", registry=self.registry
        )
        self.explanation_seconds = Histogram(
            "limner_explanation_seconds",
            "Seconds an explanation job ran",
            buckets=(0.5, 1, 2, 5, 10, 20, 60, 120, 300),
            registry=self.registry,
        )

    def explanation_done(self, _job_id: str, seconds: float) -> None:
        """Record a finished or failed explanation job."""
        self.explanation_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
