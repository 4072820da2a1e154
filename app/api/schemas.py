"""What the API returns: explicit public views of the stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.arch_schema import ArchSchema
from app.contracts.report_models import ReportBody
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


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str | None
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


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    status: JobStatus
    progress: float
    stage: str
    params: dict[str, Any]
    error: str | None
    attempts: int
    cancel_requested: bool
    parent_job_id: str | None
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
    schema_version: str
    passed: bool
    created_at: datetime


class ReportPublic(ReportSummary):
    body: ReportBody = Field(
        description="the report of one job kind (`kind` tells which), with the computed `figures` it shows"
    )


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
