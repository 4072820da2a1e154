"""What the API returns: explicit public views of the stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

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
