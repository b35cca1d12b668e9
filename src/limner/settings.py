"""Service settings, read from ``LIMNER_*`` environment variables (pydantic-settings).

Nothing is read at import time: :func:`get_settings` builds the settings on first use and caches
them; tests and embedded servers build :class:`Settings` directly.
"""

from __future__ import annotations

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
    #: Explanation jobs that run at once.
    workers: int = Field(default=4, ge=1, le=64)
    #: Where explanation jobs run: ``thread`` (an in-process pool).
    executor: Literal["thread"] = "thread"
    #: Device for models served here: ``auto``, ``cpu`` or ``cuda``.
    device: str = "auto"
    #: Models kept loaded at once (least recently used ones are unloaded).
    max_loaded_models: int = Field(default=8, ge=1)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite (WAL) in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'limner.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (built once, then cached)."""
    return Settings()
