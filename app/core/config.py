"""All configuration, read once from ``RECOMB_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults (SQLite + filesystem broker under ``data_dir``) unless URLs say otherwise."""

    model_config = SettingsConfigDict(env_prefix="RECOMB_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    broker_url: str | None = Field(default=None, description="Celery broker URL; default: filesystem transport in data_dir")
    broker_key_prefix: str = Field(default="", description="prefix for every broker key (Redis), so deployments can share a server")
    queue: str = "recomb"
    artifact_store: Literal["db", "dir"] = "db"
    artifact_dir: Path | None = None
    api_keys: str = Field(default="", description="comma-separated bearer tokens; empty = open, bound to 127.0.0.1")
    max_upload_bytes: int = 64 * 1024 * 1024
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    reconcile_interval_s: float = 10.0
    requeue_after_s: float = 300.0
    max_attempts: int = 3
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(default="json", description="format of the `recomb api` and `recomb worker` logs")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'recomb.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").expanduser().resolve()

    @property
    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    @property
    def is_embedded(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem")


@lru_cache
def get_settings() -> Settings:
    return Settings()
