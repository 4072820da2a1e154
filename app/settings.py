"""All configuration, read once from ``RECOMB_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["read", "submit", "admin"]
# Each role can do what the ones before it can: read < submit < admin.
ROLES: tuple[Role, ...] = ("read", "submit", "admin")
# A key written without a role: every key could do everything before roles existed.
BARE_KEY_ROLE: Role = "admin"


def parse_api_keys(text: str) -> list[tuple[str, Role]]:
    """``"k1,k2:read"`` -> ``[("k1", "admin"), ("k2", "read")]``; a suffix after the last ``:`` must be a role."""
    parsed: list[tuple[str, Role]] = []
    for index, entry in enumerate(item.strip() for item in text.split(",")):
        if not entry:
            continue
        key, colon, role = entry.rpartition(":")
        if not colon:
            parsed.append((entry, BARE_KEY_ROLE))
            continue
        if role not in ROLES or not key:
            # Never echo the entry: it holds a secret.
            raise ValueError(
                f"RECOMB_API_KEYS entry {index + 1}: expected key or key:role with role one of {', '.join(ROLES)}"
            )
        parsed.append((key, role))
    return parsed


class Settings(BaseSettings):
    """Embedded defaults (SQLite + filesystem broker under ``data_dir``) unless URLs say otherwise."""

    # Errors never repeat the value they refuse: API keys and database URLs hold secrets.
    model_config = SettingsConfigDict(env_prefix="RECOMB_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path("./var")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; default: filesystem transport in data_dir"
    )
    broker_key_prefix: str = Field(
        default="", description="prefix for every broker key (Redis), so deployments can share a server"
    )
    queue: str = "recomb"
    artifact_store: Literal["db", "dir"] = "db"
    artifact_dir: Path | None = None
    api_keys: str = Field(
        default="",
        description="comma-separated bearer tokens, each `key` (admin) or `key:role` with role read, submit or admin; "
        "empty = open, bound to 127.0.0.1",
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="largest upload body, and largest tensor data a .pt may unpack to"
    )
    max_params: int = Field(
        default=1_000_000,
        ge=1,
        description="largest network (parameters) accepted by uploads, synthetic parents and distillation",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="largest JSON request body; larger ones get 413 unread"
    )
    upload_concurrency: int = Field(
        default=4, ge=1, description="uploads one API process parses at once; others wait briefly, then get 429"
    )
    submit_concurrency: int = Field(
        default=8, ge=1, description="job submissions one API process handles at once; others wait 0.1 s, then get 429"
    )
    api_threads: int = Field(
        default=16, ge=1, description="threads one API process runs blocking handlers on (database work, parsing)"
    )
    public_docs: bool = Field(
        default=True, description="with API keys set, false puts /docs and /openapi.json behind the key too"
    )
    max_state_values: int = Field(
        default=64 * 1024 * 1024, gt=0, description="largest state buffer (rows x width), uploaded or synthetic"
    )
    max_job_calls: int = Field(
        default=5_000_000,
        gt=0,
        description="work budget of one job: network calls (training steps, timed repeats, rollout steps)",
    )
    max_job_multiply_adds: int = Field(
        default=2 * 10**12, gt=0, description="work budget of one job: rows x parameters over all its forwards"
    )
    max_queued_jobs: int = Field(
        default=1000,
        gt=0,
        description="queued jobs beyond which POST /jobs answers 429, but for callers under their fair share",
    )
    job_time_limit_s: float = Field(
        default=1800.0, gt=0, description="run time after which a job is stopped and failed"
    )
    job_time_limits_s: dict[str, float] = Field(
        default_factory=dict, description='per-kind overrides of job_time_limit_s, JSON: {"search-trial": 300}'
    )
    job_memory_limit_mb: float = Field(
        default=4096.0, gt=0, description="memory a job may add to its worker's RSS before it is stopped and failed"
    )
    job_memory_limits_mb: dict[str, float] = Field(
        default_factory=dict, description="per-kind overrides of job_memory_limit_mb, JSON"
    )
    idempotency_window_s: float = Field(
        default=24 * 3600.0, gt=0, description="how long an Idempotency-Key returns its first result"
    )
    worker_niceness: int = Field(
        default=10, ge=0, le=19, description="CPU niceness of `recomb worker`: under contention the API answers first"
    )
    retention_days: int = Field(
        default=0,
        ge=0,
        description="finished work older than this many days, unregistered, is removed by the workers; 0: never",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="how often a worker applies retention (with RECOMB_RETENTION_DAYS set)"
    )
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    reconcile_interval_s: float = 10.0
    requeue_after_s: float = 300.0
    max_attempts: int = 3
    webhook_allow_private: bool = Field(
        default=False,
        description="let webhooks reach loopback, private, link-local and unspecified addresses (refused by default)",
    )
    webhook_attempts: int = Field(default=5, ge=1, le=20, description="deliveries of one event before giving up")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, description="time one webhook delivery may take")
    webhook_base_delay_s: float = Field(
        default=2.0, gt=0, description="wait before the first retry of a webhook; doubled after each failure"
    )
    webhook_poll_interval_s: float = Field(
        default=1.0, gt=0, description="how often each worker looks for webhook deliveries that are due"
    )
    max_job_log_lines: int = Field(
        default=2000,
        ge=1,
        description="log lines kept per job (GET /jobs/{id}/logs); later lines are dropped behind one marker line",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json", description="format of the `recomb api` and `recomb worker` logs"
    )

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

    @field_validator("api_keys", mode="after")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        parse_api_keys(value)  # a typo in a role must stop the service, not grant or deny access silently
        return value

    @property
    def api_key_list(self) -> list[str]:
        return [key for key, _ in parse_api_keys(self.api_keys)]

    @property
    def api_key_roles(self) -> list[tuple[str, Role]]:
        """Each configured key with its role: ``key:role``, or a bare ``key`` with the admin role."""
        return parse_api_keys(self.api_keys)

    @property
    def is_embedded(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem")

    def time_limit_s(self, kind: str) -> float:
        return self.job_time_limits_s.get(kind, self.job_time_limit_s)

    def memory_limit_bytes(self, kind: str) -> int:
        return int(self.job_memory_limits_mb.get(kind, self.job_memory_limit_mb) * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
