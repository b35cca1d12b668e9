"""Service settings, read from ``LIMNER_*`` environment variables (pydantic-settings).

Nothing is read at import time: :func:`get_settings` builds the settings on first use and caches
them; tests and embedded servers build :class:`Settings` directly.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with (environment variable ``LIMNER_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="LIMNER_", extra="ignore")

    #: Where the SQLite database, blobs (images, panes) and uploaded models live.
    data_dir: Path = Field(default=Path("limner-data"))
    #: SQLAlchemy URL; empty means SQLite in ``data_dir``. PostgreSQL:
    #: ``postgresql+psycopg://user@host:5432/db``.
    database_url: str = ""
    #: Largest request body accepted, in bytes (413 beyond it).
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    #: Largest model upload (``POST /v1/deployments``) accepted, in bytes.
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    #: Largest decoded image accepted, in pixels (413 beyond it).
    max_pixels: int = Field(default=40_000_000, ge=1)
    #: Most pixels one request may decode, over all its images (413 beyond it), checked on the
    #: image headers before any image is decoded.
    max_request_pixels: int = Field(default=64_000_000, ge=1)
    #: Most perturbation samples an explanation may ask for (422 beyond it).
    max_samples: int = Field(default=5000, ge=8)
    #: Most segments an explanation may ask for (422 beyond it).
    max_segments: int = Field(default=400, ge=2)
    #: Explanation jobs one space may have queued or running at once (429 beyond it).
    max_jobs_per_space: int = Field(default=50, ge=1)
    #: Failed API keys one client address may send in ``failed_key_window_seconds`` before it
    #: gets 429 (counted per replica, in memory).
    max_failed_keys: int = Field(default=10, ge=1)
    #: The sliding window of :attr:`max_failed_keys`, in seconds.
    failed_key_window_seconds: float = Field(default=60.0, gt=0)
    #: Serve ``/metrics`` of every space, without a key, on this port as well (for the
    #: operator's scraper); unset: only the keyed ``/metrics`` of the API port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: The address of :attr:`metrics_port`.
    metrics_host: str = "127.0.0.1"
    #: Explanation jobs that run at once.
    workers: int = Field(default=4, ge=1, le=64)
    #: Where explanation jobs run: ``thread`` (an in-process pool) or ``ray`` (actors on a Ray
    #: cluster; extra ``limner[ray]``).
    executor: Literal["thread", "ray"] = "thread"
    #: Ray cluster to join with ``executor=ray`` (``host:port`` of the head); empty: Ray's own
    #: default (``RAY_ADDRESS``, a cluster started on this machine, else a new local one).
    ray_address: str = ""
    #: Ray namespace of limner's actors.
    ray_namespace: str = "limner"
    #: Ray actors (model workers) started by this replica.
    ray_actors: int = Field(default=2, ge=1, le=1024)
    #: CPUs each Ray actor reserves (fractions allowed).
    ray_actor_cpus: float = Field(default=1.0, ge=0)
    #: GPUs each Ray actor reserves; unset: one when the cluster has GPUs, none otherwise.
    ray_num_gpus: float | None = Field(default=None, ge=0)
    #: Times a dead Ray actor is restarted and its interrupted calls retried.
    ray_max_restarts: int = Field(default=3, ge=0)
    #: Blob store shared by every replica: a folder, or an fsspec URL (``s3://bucket/limner``);
    #: empty means ``data_dir/blobs``.
    blob_url: str = ""
    #: Name of this replica in job leases; empty: ``local`` on SQLite (one process per database),
    #: a unique name per process otherwise.
    replica_id: str = ""
    #: Seconds a claimed job stays leased without a renewal before another replica takes it.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: Seconds between looks for queued jobs and jobs whose lease expired.
    poll_seconds: float = Field(default=2.0, gt=0)
    #: Device for models served here: ``auto``, ``cpu`` or ``cuda``.
    device: str = "auto"
    #: Models kept loaded at once (least recently used ones are unloaded).
    max_loaded_models: int = Field(default=8, ge=1)
    #: Port of the Open Inference gRPC service; unset: no gRPC service (0: any free port).
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    #: Address the gRPC service listens on.
    grpc_host: str = "127.0.0.1"

    #: URLs the server may call whatever their address (remote models, external scoring URLs):
    #: comma-separated URL prefixes (``http://127.0.0.1:9000/``) or host patterns
    #: (``*.example.com``). Any other URL must resolve to public addresses only.
    allowed_urls: str = ""
    #: Server folders an admin key may deploy models from (comma-separated); empty: none.
    model_roots: str = ""
    #: Largest total size a model upload (a .zip) may unpack to, in bytes (413 beyond it).
    max_unpacked_bytes: int = Field(default=1_000_000_000, ge=1)
    #: Storage each space may use for uploaded models, in bytes (413 when full).
    space_quota_bytes: int = Field(default=5_000_000_000, ge=0)
    #: Seconds a model may take to load when deployed (uploads and URLs) before the deploy fails.
    model_load_timeout: float = Field(default=60.0, gt=0)
    #: Models loaded at once for deployments; more deploys wait briefly, then get 503.
    model_loads: int = Field(default=2, ge=1, le=64)
    #: Seconds one model call (a forward pass, or one request to a remote model) may take before
    #: its worker is stopped and the call fails (504).
    model_call_timeout: float = Field(default=30.0, gt=0)
    #: Seconds one explanation job may take in all before it fails.
    job_timeout: float = Field(default=600.0, gt=0)
    #: Address space of one model worker, in bytes (``RLIMIT_AS``); 0: no limit.
    worker_memory_bytes: int = Field(default=6 * 1024**3, ge=0)
    #: Scoring requests one space may have waiting on its models at once (429 beyond it).
    space_scoring_concurrency: int = Field(default=16, ge=1)
    #: Keep the hash-chained audit trail of state-changing requests (``false`` only to measure
    #: what it costs).
    audit: bool = True

    def resolved_model_roots(self) -> list[Path]:
        """The folders of :attr:`model_roots`, resolved."""
        return [
            Path(p.strip()).expanduser().resolve() for p in self.model_roots.split(",") if p.strip()
        ]

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite (WAL) in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'limner.db').resolve()}"

    def resolved_replica_id(self) -> str:
        """This replica's name in job leases (see :attr:`replica_id`)."""
        if self.replica_id:
            return self.replica_id
        if self.resolved_database_url().startswith("sqlite"):
            return "local"
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def resolved_blob_url(self) -> str:
        """The blob store's folder or URL, defaulting to ``blobs`` in the data directory."""
        return self.blob_url or str(self.data_dir / "blobs")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (built once, then cached)."""
    return Settings()
