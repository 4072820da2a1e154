"""Deleting checkpoints and finished jobs, with what hangs off them; the artifact bytes nobody references go too.

Nothing here commits: a deletion is one transaction with its checks. With
the database artifact store the bytes go in that transaction; the directory
store's files are left to its sweep (``ArtifactStore.sweep``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, or_, update
from sqlmodel import Session, col, select

from app.contracts.job_kinds import JOB_KINDS
from app.service import crud
from app.service.store import ArtifactStore
from app.service.tables import (
    TERMINAL_STATUSES,
    Checkpoint,
    IdempotencyRecord,
    Job,
    LineageEdge,
    ModelAlias,
    ModelVersion,
    Report,
    ReportFigure,
    ResourceType,
    Tag,
    WebhookDelivery,
)


@dataclass
class Deleted:
    """What one deletion removed."""

    jobs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)  # "name@version"
    artifacts: int = 0

    def detail(self, cascade: bool) -> dict[str, Any]:
        """The audit log's record of it."""
        return {
            "cascade": cascade,
            "jobs": self.jobs,
            "checkpoints": self.checkpoints,
            "model_versions": self.model_versions,
            "artifacts_removed": self.artifacts,
        }


def checkpoints_in_use(session: Session, checkpoint_ids: set[str]) -> dict[str, Job]:
    """Of ``checkpoint_ids``, those an unfinished job (queued, running, waiting) takes as input or is still making,
    each with one such job.
    """
    in_use: dict[str, Job] = {}
    if not checkpoint_ids:
        return in_use
    for job in session.exec(select(Job).where(col(Job.status).not_in(TERMINAL_STATUSES))):
        kind = JOB_KINDS.get(job.kind)
        if kind is None:
            continue
        named = [job.params.get(name) for name in kind.params.checkpoint_refs]
        named += [ref for name in kind.params.checkpoint_list_refs for ref in job.params.get(name) or []]
        for ref in named:
            if ref in checkpoint_ids:
                in_use.setdefault(ref, job)
    for checkpoint_id, job in session.exec(
        select(Checkpoint.id, Job)
        .join(Job, col(Job.id) == col(Checkpoint.created_by_job))
        .where(col(Checkpoint.id).in_(checkpoint_ids), col(Job.status).not_in(TERMINAL_STATUSES))
    ):
        in_use.setdefault(checkpoint_id, job)
    return in_use


def registered_versions(session: Session, checkpoint_ids: set[str]) -> list[ModelVersion]:
    return list(session.exec(select(ModelVersion).where(col(ModelVersion.checkpoint_id).in_(checkpoint_ids))).all())


def delete_checkpoints(session: Session, store: ArtifactStore, checkpoint_ids: set[str]) -> Deleted:
    """Remove the checkpoints, their lineage edges, the registry versions that are them (and those versions' aliases)
    and the bytes nothing else references. The caller checked that nothing still needs them.
    """
    deleted = Deleted(checkpoints=sorted(checkpoint_ids))
    if not checkpoint_ids:
        return deleted
    versions = registered_versions(session, checkpoint_ids)
    for version in versions:
        session.exec(
            delete(ModelAlias).where(
                and_(col(ModelAlias.model_name) == version.model_name, col(ModelAlias.version) == version.version)
            )
        )
        session.exec(
            delete(ModelVersion).where(
                col(ModelVersion.model_name) == version.model_name, col(ModelVersion.version) == version.version
            )
        )
    deleted.model_versions = [f"{version.model_name}@{version.version}" for version in versions]
    session.exec(
        delete(LineageEdge).where(
            or_(col(LineageEdge.parent_id).in_(checkpoint_ids), col(LineageEdge.child_id).in_(checkpoint_ids))
        )
    )
    _delete_tags(session, ResourceType.checkpoint, checkpoint_ids)
    hashes = set(session.exec(select(Checkpoint.sha256).where(col(Checkpoint.id).in_(checkpoint_ids))).all())
    session.exec(delete(Checkpoint).where(col(Checkpoint.id).in_(checkpoint_ids)))
    deleted.artifacts = store.collect(session, hashes)
    return deleted


def _delete_tags(session: Session, resource_type: ResourceType, resource_ids: Iterable[str]) -> None:
    session.exec(delete(Tag).where(col(Tag.resource_type) == resource_type, col(Tag.resource_id).in_(resource_ids)))


def job_family(session: Session, job_id: str) -> list[Job]:
    """The job and its child jobs, theirs too, parents first."""
    family = list(session.exec(select(Job).where(col(Job.id) == job_id)).all())
    frontier = [job_id]
    while frontier:
        children = list(session.exec(select(Job).where(col(Job.parent_job_id).in_(frontier))).all())
        family += children
        frontier = [child.id for child in children]
    return family


def job_outputs(session: Session, job_ids: list[str]) -> set[str]:
    return set(session.exec(select(Checkpoint.id).where(col(Checkpoint.created_by_job).in_(job_ids))).all())


def delete_jobs(session: Session, store: ArtifactStore, job_ids: list[str], *, cascade: bool) -> Deleted:
    """Remove finished jobs with their reports. Their output checkpoints stay (recording no job), or with ``cascade``
    go with everything made from them (``delete_checkpoints``). The caller checked that the jobs finished.
    """
    outputs = job_outputs(session, job_ids)
    if cascade:
        deleted = delete_checkpoints(session, store, outputs | crud.descendant_ids(session, outputs))
    else:
        deleted = Deleted()
        session.exec(update(Checkpoint).where(col(Checkpoint.id).in_(outputs)).values(created_by_job=None))
    session.exec(update(LineageEdge).where(col(LineageEdge.job_id).in_(job_ids)).values(job_id=None))
    reports = select(Report.id).where(col(Report.job_id).in_(job_ids))
    session.exec(delete(ReportFigure).where(col(ReportFigure.report_id).in_(reports)))
    session.exec(delete(Report).where(col(Report.job_id).in_(job_ids)))
    _delete_tags(session, ResourceType.job, job_ids)
    # An event is built from its job when sent: a deleted job's undelivered events go with it (sent ones stay history).
    session.exec(
        delete(WebhookDelivery).where(col(WebhookDelivery.job_id).in_(job_ids), col(WebhookDelivery.sent_at).is_(None))
    )
    session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.resource_id).in_(job_ids)))
    session.exec(delete(Job).where(col(Job.id).in_(job_ids)))
    deleted.jobs = list(job_ids)
    return deleted
