"""SQLModel tables and the API's public views of them, side by side.

The schema itself is owned by Alembic (``migrations/``); these classes
describe it. JSON columns hold architecture, params and report bodies.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, ForeignKeyConstraint, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class JobStatus(StrEnum):
    """``waiting``: a composite job (search, pipeline) whose children are running; it is re-queued when one finishes."""

    queued = "queued"
    running = "running"
    waiting = "waiting"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
DEFAULT_EXPERIMENT = "default"


def experiment_field() -> Any:
    """The experiment a row is filed under: indexed, since lists filter by it."""
    return Field(
        default=DEFAULT_EXPERIMENT, index=True, max_length=100, sa_column_kwargs={"server_default": DEFAULT_EXPERIMENT}
    )


class ResourceType(StrEnum):
    """What a ``Tag`` row labels. A report shows the tags of its job, so reports have none of their own."""

    job = "job"
    checkpoint = "checkpoint"


class Blob(SQLModel, table=True):
    """Artifact bytes by content hash (the default artifact store)."""

    __tablename__ = "blobs"
    sha256: str = Field(primary_key=True, max_length=64)
    size_bytes: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("parent_job_id", "child_key"),)
    id: str = Field(default_factory=lambda: new_id("job"), primary_key=True, max_length=40)
    kind: str = Field(index=True, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    experiment: str = experiment_field()
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: JobStatus = Field(default=JobStatus.queued, index=True)
    progress: float = 0.0
    stage: str = Field(default="queued", max_length=200)
    error: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    claim_token: str | None = Field(default=None, max_length=40)
    cancel_requested: bool = False
    parent_job_id: str | None = Field(default=None, foreign_key="jobs.id", index=True, max_length=40)
    child_key: str | None = Field(
        default=None, max_length=120, description="the child's name within its parent (unique per parent)"
    )
    summary: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True), description="partial results while running"
    )
    wake_interval_s: float | None = Field(
        default=None,
        description="waiting: None wakes on every finished child; else when all are, or at most this often",
    )
    owner: str = Field(
        default="",
        max_length=64,
        description="fingerprint of the API key that queued it (children inherit it); '' when the API is open",
    )
    claimed_by: str | None = Field(
        default=None,
        max_length=120,
        description="host:pid of the worker running it, so a supervisor can re-queue it when that process dies",
    )
    created_at: datetime = Field(default_factory=utcnow, index=True)
    published_at: datetime | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None


# Upper bounds (seconds) of the job duration histogram, from a 50 ms PTQ job to an hour-long search. Each is a column
# of ``JobTotal`` (``le_0_05`` for 0.05): a new bound is a migration that adds and back-fills its column.
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class JobTotal(SQLModel, table=True):
    """Running totals of finished jobs by kind and final status: what ``/metrics`` reads, a few rows per kind.

    ``app.service.job_status`` adds each ending in the transaction that writes it, so deleting jobs or retention
    never lowers them. ``le_*`` are cumulative like Prometheus buckets: jobs that ran at most that many seconds.
    """

    __tablename__ = "job_totals"
    kind: str = Field(primary_key=True, max_length=40)
    status: JobStatus = Field(primary_key=True)
    ended: int = Field(default=0, description="jobs that ended so, with or without running")
    ran: int = Field(default=0, description="those of them that ran (have a duration): the histogram's count")
    run_seconds: float = Field(default=0.0, description="their summed duration, started_at to finished_at")
    le_0_05: int = Field(default=0, description="those that ran at most 0.05 s")
    le_0_1: int = Field(default=0, description="those that ran at most 0.1 s")
    le_0_25: int = Field(default=0, description="those that ran at most 0.25 s")
    le_0_5: int = Field(default=0, description="those that ran at most 0.5 s")
    le_1: int = Field(default=0, description="those that ran at most 1 s")
    le_2_5: int = Field(default=0, description="those that ran at most 2.5 s")
    le_5: int = Field(default=0, description="those that ran at most 5 s")
    le_10: int = Field(default=0, description="those that ran at most 10 s")
    le_30: int = Field(default=0, description="those that ran at most 30 s")
    le_60: int = Field(default=0, description="those that ran at most 60 s")
    le_120: int = Field(default=0, description="those that ran at most 120 s")
    le_300: int = Field(default=0, description="those that ran at most 300 s")
    le_600: int = Field(default=0, description="those that ran at most 600 s")
    le_1800: int = Field(default=0, description="those that ran at most 1800 s")
    le_3600: int = Field(default=0, description="those that ran at most 3600 s")


class Checkpoint(SQLModel, table=True):
    __tablename__ = "checkpoints"
    id: str = Field(default_factory=lambda: new_id("ckpt"), primary_key=True, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    experiment: str = experiment_field()
    arch: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    format: str = Field(max_length=16)
    dtype: str = Field(max_length=16, description="storage dtype of the Linear weights")
    source_format: str = Field(
        default="recomb", max_length=16, description="the layout the network came from (what a pt export restores)"
    )
    quantization: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    sha256: str = Field(index=True, max_length=64)
    size_bytes: int
    param_bytes: int
    created_by_job: str | None = Field(default=None, foreign_key="jobs.id", index=True, max_length=40)
    created_by: str = Field(
        default="",
        max_length=64,
        description="fingerprint of the API key that uploaded or synthesised it, or that queued the job making it",
    )
    output_index: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)


class LineageEdge(SQLModel, table=True):
    __tablename__ = "lineage_edges"
    __table_args__ = (UniqueConstraint("parent_id", "child_id", "role"),)
    id: int | None = Field(default=None, primary_key=True)
    parent_id: str = Field(foreign_key="checkpoints.id", index=True, max_length=40)
    child_id: str = Field(foreign_key="checkpoints.id", index=True, max_length=40)
    role: str = Field(max_length=40)
    job_id: str | None = Field(default=None, foreign_key="jobs.id", max_length=40)


class JobLog(SQLModel, table=True):
    """One log record of a job's run, captured by its worker; ``id`` orders a job's lines and is the read cursor."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job_id_id", "job_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", ondelete="CASCADE", max_length=40)
    level: str = Field(max_length=16)
    logged_at: datetime
    logger: str = Field(max_length=200)
    message: str = Field(sa_column=Column(Text, nullable=False))


class StateBuffer(SQLModel, table=True):
    __tablename__ = "state_buffers"
    id: str = Field(default_factory=lambda: new_id("st"), primary_key=True, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    n: int
    dim: int
    sha256: str = Field(index=True, max_length=64)
    size_bytes: int
    actions_sha256: str | None = Field(
        default=None, max_length=64, description="the actions recorded with the states (int64 .npy), if uploaded"
    )
    actions_max: int | None = Field(
        default=None, description="the largest recorded action index, checked against a network's outputs"
    )
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def has_actions(self) -> bool:
        return self.actions_sha256 is not None


class Report(SQLModel, table=True):
    __tablename__ = "reports"
    # Covers a kind's list newest first, and a count of a kind's reports, without reading their bodies.
    __table_args__ = (Index("ix_reports_kind_created_at_id", "kind", "created_at", "id"),)
    id: str = Field(default_factory=lambda: new_id("rep"), primary_key=True, max_length=40)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=40)
    kind: str = Field(max_length=40)
    experiment: str = experiment_field()
    schema_version: str = Field(max_length=16)
    passed: bool
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class RegisteredModel(SQLModel, table=True):
    """A name under which checkpoints are published as numbered versions (``app.service.registry``)."""

    __tablename__ = "registered_models"
    name: str = Field(primary_key=True, max_length=64)
    description: str | None = Field(default=None, max_length=2000)
    created_by: str = Field(default="", max_length=64, description="fingerprint of the API key that registered it")
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ModelVersion(SQLModel, table=True):
    """Version ``version`` (1, 2, ... per model) of a registered model: one checkpoint."""

    __tablename__ = "model_versions"
    model_name: str = Field(primary_key=True, foreign_key="registered_models.name", max_length=64)
    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    checkpoint_id: str = Field(foreign_key="checkpoints.id", index=True, max_length=40)
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ModelAlias(SQLModel, table=True):
    """A movable name (``production``, ``candidate``) for one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(["model_name", "version"], ["model_versions.model_name", "model_versions.version"]),
    )
    model_name: str = Field(primary_key=True, max_length=64)
    alias: str = Field(primary_key=True, max_length=64)
    version: int


class Tag(SQLModel, table=True):
    """One tag of a job or checkpoint; filtering by tag is an indexed join on ``(resource_type, tag)``."""

    __tablename__ = "tags"
    __table_args__ = (Index("ix_tags_resource_type_tag", "resource_type", "tag"),)
    resource_type: str = Field(primary_key=True, max_length=16)
    resource_id: str = Field(primary_key=True, max_length=40)
    tag: str = Field(primary_key=True, max_length=64)


class ReportFigure(SQLModel, table=True):
    """One numeric figure of a report (``report_models.numeric_figures``), written with the report.

    Lists sort and filter reports by figure through the ``(kind, name, value, report_id)`` index, which also
    counts them without reading the table.
    """

    __tablename__ = "report_figures"
    __table_args__ = (Index("ix_report_figures_kind_name_value", "kind", "name", "value", "report_id"),)
    report_id: str = Field(primary_key=True, foreign_key="reports.id", max_length=40)
    name: str = Field(primary_key=True, max_length=120)
    kind: str = Field(max_length=40)
    value: float


class IdempotencyRecord(SQLModel, table=True):
    """What a POST with an ``Idempotency-Key`` created, scoped to its caller and route (``idempotency``)."""

    __tablename__ = "idempotency_keys"
    owner: str = Field(primary_key=True, max_length=64)
    route: str = Field(primary_key=True, max_length=80)
    key: str = Field(primary_key=True, max_length=200)
    request_sha256: str = Field(max_length=64)
    resource_id: str = Field(max_length=40)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Webhook(SQLModel, table=True):
    """A URL notified, with a signed POST, of the job events it subscribed to."""

    __tablename__ = "webhooks"
    id: str = Field(default_factory=lambda: new_id("wh"), primary_key=True, max_length=40)
    url: str = Field(max_length=2000)
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=200, description="HMAC-SHA256 key of the signature; never returned")
    created_by: str = Field(default="", max_length=64, description="fingerprint of the API key that registered it")
    created_at: datetime = Field(default_factory=utcnow, index=True)


class WebhookDelivery(SQLModel, table=True):
    """One attempt to deliver one event to one webhook; the rows not yet sent are the outbox.

    A job's ending adds the first attempt of each subscribed webhook's event
    in the transaction that ends the job; a failed attempt adds the next one,
    due after the backoff, in the transaction that records the failure.
    """

    __tablename__ = "webhook_deliveries"
    id: str = Field(default_factory=lambda: new_id("dlv"), primary_key=True, max_length=40)
    webhook_id: str = Field(foreign_key="webhooks.id", index=True, max_length=40)
    event_id: str = Field(max_length=40, description="the same for every attempt at one event (X-Recomb-Event-Id)")
    event: str = Field(max_length=40)
    job_id: str = Field(index=True, max_length=40)
    attempt: int
    due_at: datetime = Field(index=True)
    leased_until: datetime | None = Field(default=None, description="a worker is sending it until then")
    sent_at: datetime | None = Field(default=None, index=True)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: float | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class AuditEvent(SQLModel, table=True):
    """Who changed what: one row per administrative change, written in the change's own transaction."""

    __tablename__ = "audit_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=64, description="fingerprint of the API key that made the change ('' when open)")
    action: str = Field(index=True, max_length=80)
    target_type: str = Field(index=True, max_length=40)
    target_id: str = Field(index=True, max_length=120)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
