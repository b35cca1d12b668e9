"""What a running service holds: settings, database, blobs, models and the job runner."""

from __future__ import annotations

from dataclasses import dataclass

from limner.jobs import JobRunner, ModelProvider, make_executor
from limner.service.loads import ModelLoads
from limner.service.metrics import Metrics
from limner.settings import Settings
from limner.store import Database, open_blob_store
from limner.store.blobs import BlobStore


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

    @classmethod
    def open(cls, settings: Settings) -> ServiceState:
        """Open the database (migrating it), the blob store, and start the job runner."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url())
        db.migrate()
        blobs = open_blob_store(settings.resolved_blob_url())
        models = ModelProvider.from_settings(settings)
        metrics = Metrics()
        runner = JobRunner(
            db,
            blobs,
            models,
            make_executor(settings.executor, settings.workers, settings),
            max_pixels=settings.max_pixels,
            on_done=metrics.explanation_done,
            replica_id=settings.resolved_replica_id(),
            lease_seconds=settings.lease_seconds,
            poll_seconds=settings.poll_seconds,
        )
        runner.resume()
        loads = ModelLoads(max_concurrent=settings.model_loads, timeout=settings.model_load_timeout)
        return cls(settings, db, blobs, models, runner, metrics, loads)

    def close(self) -> None:
        """Stop the jobs, unload the models, close the database."""
        self.loads.close()
        self.runner.close()
        self.models.registry.close()
        self.db.close()
