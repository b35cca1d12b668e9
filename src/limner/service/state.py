"""What a running service holds: settings, database, blobs, models and the job runner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from limner.jobs import JobRunner, ModelProvider, make_executor
from limner.jobs.explainers import ExplainerTrainer
from limner.jobs.foreground import Foreground
from limner.service.guard import FailedKeyLimiter
from limner.service.loads import ModelLoads
from limner.service.metrics import Metrics, serve_operator_metrics
from limner.service.slots import SpaceSlots
from limner.settings import Settings
from limner.store import AuditLog, Database, open_blob_store
from limner.store.blobs import BlobStore
from limner.store.private import private_dir


@dataclass
class ServiceState:
    """The service's long-lived parts, built on start and closed on stop."""

    settings: Settings
    db: Database
    blobs: BlobStore
    models: ModelProvider
    runner: JobRunner
    metrics: Metrics
    loads: ModelLoads
    key_limiter: FailedKeyLimiter
    scoring_slots: SpaceSlots
    audit: AuditLog
    explainers: ExplainerTrainer
    foreground: Foreground
    metrics_server: Any = None

    @classmethod
    def open(cls, settings: Settings) -> ServiceState:
        """Open the database (migrating it), the blob store, and start the job runner."""
        private_dir(settings.data_dir)
        db = Database(settings.resolved_database_url())
        db.migrate()
        blobs = open_blob_store(settings.resolved_blob_url())
        models = ModelProvider.from_settings(settings)
        metrics = Metrics()
        foreground = Foreground()
        explainers = ExplainerTrainer(
            db,
            blobs,
            models,
            max_pixels=settings.max_pixels,
            replica_id=settings.resolved_replica_id(),
        )
        runner = JobRunner(
            db,
            blobs,
            models,
            make_executor(settings.executor, settings.workers, settings),
            max_pixels=settings.max_pixels,
            on_done=lambda job_id, seconds: metrics.explanation_done(
                runner.space_of(job_id), seconds
            ),
            replica_id=settings.resolved_replica_id(),
            lease_seconds=settings.lease_seconds,
            poll_seconds=settings.poll_seconds,
            fair_share=max(1, settings.workers // 2),
            job_timeout=settings.job_timeout,
            explainers=explainers,
            foreground=foreground,
        )
        runner.resume()
        explainers.resume()
        loads = ModelLoads(max_concurrent=settings.model_loads, timeout=settings.model_load_timeout)
        server = None
        if settings.metrics_port is not None:
            server = serve_operator_metrics(metrics, settings.metrics_host, settings.metrics_port)
        limiter = FailedKeyLimiter(settings.max_failed_keys, settings.failed_key_window_seconds)
        slots = SpaceSlots(
            settings.space_scoring_concurrency,
            what="scoring requests",
            setting="LIMNER_SPACE_SCORING_CONCURRENCY",
        )
        audit = AuditLog(db, enabled=settings.audit)
        return cls(
            settings, db, blobs, models, runner, metrics, loads, limiter, slots, audit, explainers,
            foreground, server,
        )  # fmt: skip

    def close(self) -> None:
        """Stop the jobs, unload the models, close the database."""
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.loads.close()
        self.runner.close()
        self.explainers.close()
        self.models.registry.close()
        self.audit.close()
        self.db.close()
