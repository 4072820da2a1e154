"""What the API returns: explicit public views of the stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.arch_schema import ArchSchema
from app.contracts.labels import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_DESCRIPTION,
    NAME_DESCRIPTION,
    TAGS_DESCRIPTION,
    Experiment,
    Name,
    Tags,
)
from app.contracts.model_refs import ALIAS_PATTERN, MODEL_NAME_PATTERN
from app.contracts.report_models import FigureValue, ReportBody
from app.service.tables import JobStatus

ItemT = TypeVar("ItemT")


class SyntheticCheckpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "arch": {
                        "input_dim": 8,
                        "hidden_sizes": [64, 64],
                        "output_dim": 4,
                        "norm": "layernorm",
                        "activation": "relu",
                    },
                    "seed": 0,
                }
            ]
        },
    )
    arch: ArchSchema = Field(default_factory=ArchSchema)
    seed: int = Field(..., ge=0, le=2**63 - 1)
    name: str | None = Field(default=None, max_length=200)
    experiment: Experiment = Field(default=DEFAULT_EXPERIMENT, description=EXPERIMENT_DESCRIPTION)
    tags: Tags = Field(default_factory=list, description=TAGS_DESCRIPTION)


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str | None
    experiment: str = Field(description="the experiment it is filed under (a job's outputs inherit the job's)")
    tags: list[str] = Field(default_factory=list, description="its tags, sorted (a job's outputs inherit the job's)")
    arch: dict[str, Any]
    format: str
    dtype: str
    source_format: str = Field(
        description="the layout the network came from: reference, cleanrl, sb3, safetensors or recomb"
    )
    quantization: dict[str, Any] | None
    sha256: str
    size_bytes: int
    param_bytes: int
    created_by_job: str | None
    created_by: str = Field(
        description="fingerprint of the API key that uploaded or synthesised it, or that queued the job that made "
        "it ('' when the API is open)"
    )
    created_at: datetime


class StatesPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str | None
    n: int
    dim: int
    sha256: str
    size_bytes: int
    has_actions: bool = Field(
        description="the upload carried the actions the agent took; validators then report agreement with them"
    )
    created_at: datetime


class LineageEdgePublic(BaseModel):
    parent: str
    child: str
    role: str
    job_id: str | None


class LineagePublic(BaseModel):
    root: str
    nodes: list[CheckpointPublic]
    edges: list[LineageEdgePublic]


class DescendantPublic(BaseModel):
    checkpoint: CheckpointPublic = Field(description="a checkpoint made, directly or not, from the root")
    depth: int = Field(description="lineage edges from the root: 1 for a child, 2 for a grandchild, ...")
    parent: str = Field(description="the checkpoint one step nearer the root through which it was first reached")
    role: str = Field(description="the role that parent played in making it (teacher, source, parent_a, ...)")


class DescendantsPublic(BaseModel):
    root: str = Field(description="the checkpoint whose descendants these are")
    descendants: list[DescendantPublic] = Field(description="breadth first, nearest first")
    edges: list[LineageEdgePublic] = Field(description="every lineage edge between the root and its descendants")
    truncated: bool = Field(description="true when more descendants exist than the response holds (500 at most)")


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "lunar-lander-int8"}]})
    name: str = Field(
        pattern=MODEL_NAME_PATTERN,
        description="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no '@': "
        "`name@alias` names a version)",
    )
    description: str | None = Field(default=None, max_length=2000, description="free text")


class ModelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str = Field(description="the model's name, unique")
    description: str | None = Field(description="free text given at registration")
    created_at: datetime = Field(description="when it was registered")
    latest_version: int | None = Field(default=None, description="its highest version number; null before the first")
    aliases: dict[str, int] = Field(default_factory=dict, description="each alias and the version it points at")


class ModelVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint_id: str = Field(max_length=40, description="the checkpoint this version is")


class ModelVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    model_name: str = Field(description="the registered model")
    version: int = Field(description="1, 2, ... in the order versions were registered")
    checkpoint_id: str = Field(description="the checkpoint this version is")
    created_at: datetime = Field(description="when it was registered")


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=2**31 - 1, description="the version the alias points at from now on")


class AliasPublic(BaseModel):
    model_name: str = Field(description="the registered model")
    alias: str = Field(description=f"the alias ({ALIAS_PATTERN}); jobs accept `model@alias` as a checkpoint id")
    version: int = Field(description="the version it points at")
    checkpoint: CheckpointPublic = Field(description="that version's checkpoint")


class DeletedPublic(BaseModel):
    jobs: list[str] = Field(description="jobs removed, with their reports")
    checkpoints: list[str] = Field(description="checkpoints removed, with their lineage edges")
    model_versions: list[str] = Field(description="registry versions removed with their checkpoints, as model@version")
    artifacts_removed: int = Field(description="stored artifacts no longer referenced by anything, removed")


class RetentionKept(BaseModel):
    job_id: str = Field(description="a finished job old enough to remove")
    reason: str = Field(description="why it stays, e.g. an output registered as a model version")


class RetentionPublic(BaseModel):
    dry_run: bool = Field(description="true: nothing was removed; the lists say what would have been")
    finished_before: datetime = Field(description="the cutoff: work finished before it was considered")
    jobs: list[str] = Field(description="top-level jobs removed, with their child jobs and reports")
    checkpoints: list[str] = Field(description="output checkpoints removed with them")
    artifacts_removed: int = Field(description="stored artifacts no longer referenced by anything, removed")
    kept: list[RetentionKept] = Field(description="old jobs that stay, and why")
    more: bool = Field(description="true when more old jobs remain than one pass considers: run again")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    name: str | None = Field(description="the name given when it was queued or patched")
    experiment: str = Field(description="the experiment it is filed under (children inherit their parent's)")
    tags: list[str] = Field(default_factory=list, description="its tags, sorted (children inherit their parent's)")
    status: JobStatus
    progress: float
    stage: str
    params: dict[str, Any]
    error: str | None
    attempts: int
    cancel_requested: bool
    parent_job_id: str | None
    owner: str = Field(
        description="fingerprint of the API key that queued it (children inherit it); '' when the API is open"
    )
    summary: dict[str, Any] | None = Field(
        default=None, description="partial results of a running composite job, e.g. the search leaderboard so far"
    )
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    report_id: str | None = None
    output_checkpoint_ids: list[str] = Field(default_factory=list)
    children: list[str] = Field(default_factory=list)


class JobLogLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="the line's position in the job's log; pass the last one seen as `after` to read on")
    level: str = Field(description="the record's level: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logged_at: datetime = Field(description="when the worker logged it")
    logger: str = Field(description="the name of the logger that wrote it, e.g. recomb.worker")
    message: str = Field(description="the message, with the traceback when the record carried one")


class JobLogPage(BaseModel):
    items: list[JobLogLine] = Field(description="the job's log lines after `after`, oldest first")
    next_after: int = Field(
        description="the `after` that reads on from here (the last line's id; `after` itself when there was none)"
    )
    job_status: JobStatus = Field(
        description="the job's status when read; the line that records its end follows the status by a moment, so "
        "a reader that saw it finished reads once more"
    )


class ReportSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    job_id: str
    kind: str
    experiment: str = Field(description="the experiment of the job that wrote it")
    tags: list[str] = Field(default_factory=list, description="the tags of the job that wrote it, sorted")
    schema_version: str
    passed: bool
    created_at: datetime


class ReportPublic(ReportSummary):
    body: ReportBody = Field(
        description="the report of one job kind (`kind` tells which), with the computed `figures` it shows"
    )


WebhookEvent = Literal["job.succeeded", "job.failed", "job.cancelled"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/recomb",
                    "events": ["job.succeeded", "job.failed"],
                    "secret": "a-long-random-shared-secret",
                }
            ]
        },
    )
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http:// or https:// URL that receives a signed JSON POST per event; its host must resolve to "
        "public addresses only, unless RECOMB_WEBHOOK_ALLOW_PRIVATE=true",
    )
    events: list[WebhookEvent] = Field(
        default=["job.succeeded", "job.failed", "job.cancelled"],
        min_length=1,
        max_length=3,
        description="the job endings to notify: job.succeeded, job.failed, job.cancelled (default: all three)",
    )
    secret: str = Field(
        min_length=16,
        max_length=200,
        description="shared secret: X-Recomb-Signature is sha256=<hex HMAC-SHA256 of the raw body with it>; "
        "stored, never returned",
    )


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str = Field(description="the webhook's id")
    url: str = Field(description="where events are POSTed")
    events: list[str] = Field(description="the job endings it is notified of")
    created_by: str = Field(description="fingerprint of the API key that registered it ('' when the API is open)")
    created_at: datetime = Field(description="when it was registered")


class WebhookDeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str = Field(description="this attempt's id")
    event_id: str = Field(description="the event's id, the same for each attempt at it (header X-Recomb-Event-Id)")
    event: str = Field(description="job.succeeded, job.failed or job.cancelled")
    job_id: str = Field(description="the job that ended")
    attempt: int = Field(description="1 for the first delivery of the event, then 2, 3, ... for the retries")
    due_at: datetime = Field(description="when the attempt was (or is) due, after the backoff for a retry")
    sent_at: datetime | None = Field(description="when it was made; null while it waits in the outbox")
    status_code: int | None = Field(description="the receiver's HTTP status, if it answered")
    error: str | None = Field(description="why the attempt failed: a non-2xx status, a timeout, a refused address")
    duration_ms: float | None = Field(description="how long the attempt took, in milliseconds")


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="the event's sequence number")
    at: datetime = Field(description="when the change was committed")
    actor: str = Field(description="fingerprint of the API key that made the change ('' when the API is open)")
    action: str = Field(description="what was done, e.g. webhook.create, webhook.delete")
    target_type: str = Field(description="the kind of thing changed, e.g. webhook")
    target_id: str = Field(description="the id of the thing changed")
    detail: dict[str, Any] = Field(description="facts about the change (never a secret)")


class LabelsPatch(BaseModel):
    """A change of name and tags; a field left out keeps its value, ``tags`` replaces them all."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = Field(default=None, description=f"the new name: {NAME_DESCRIPTION}")
    tags: Tags | None = Field(default=None, description=f"the new tags, replacing the old: {TAGS_DESCRIPTION}")


class FigureComparison(BaseModel):
    """One figure across the compared reports, in the order they were asked for."""

    name: str = Field(description="dotted path of the figure within a report body, e.g. `held_out.action_agreement`")
    values: list[FigureValue] = Field(description="its value in each report; null where a report lacks it")
    differences: list[float | None] = Field(
        description="each value minus the first report's; null where either is missing or not a number"
    )


class ComparedReport(BaseModel):
    """One report of a comparison."""

    id: str = Field(description="the report's id")
    kind: str = Field(description="its job kind")
    job_id: str = Field(description="the job that wrote it")
    passed: bool = Field(description="the job's verdict")
    curves: list[dict[str, Any]] = Field(
        description="its per-epoch figures (`curves` of distill, qat and finetune reports); empty for other kinds"
    )


class ReportComparison(BaseModel):
    """Reports side by side: every figure any of them shows, with its difference from the first report."""

    reports: list[ComparedReport] = Field(description="the reports, in the order of `ids`")
    figures: list[FigureComparison] = Field(description="every figure any of them shows, first-seen order")


# The largest OFFSET SQLite and PostgreSQL accept (a signed 64-bit integer); beyond it they fail, not page.
MAX_OFFSET = 2**63 - 1


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


class ErrorDetail(BaseModel):
    """Every 4xx body: a message, or (for a malformed request) FastAPI's list of field errors."""

    detail: str | list[dict[str, Any]]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
