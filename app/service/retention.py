"""Retention: finished work older than ``RECOMB_RETENTION_DAYS`` goes, unless something protects it.

The unit is a finished top-level job with its child jobs, reports and output
checkpoints. Jobs are taken newest first, and one goes only with its own
outputs and only when nothing else was made from them (a chain of old jobs
goes in one pass, from its end), so retention never removes a checkpoint
that newer work came from. What protects work is ``protection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.service import audit, crud, deletion
from app.service.store import ArtifactStore
from app.service.tables import TERMINAL_STATUSES, Job, ModelVersion, ResourceType, Tag

# Jobs one pass considers, so a pass is bounded however much history there is; the next pass continues.
MAX_JOBS_PER_PASS = 1000


def protections(job_ids: list[str], checkpoint_ids: set[str]) -> dict[str, SelectOfScalar[str]]:
    """Each reason to keep work, as a query for what it protects among these jobs and their outputs (no row: nothing).

    Another protection is one more entry.
    """
    return {
        "registered as a model version": select(ModelVersion.checkpoint_id).where(
            col(ModelVersion.checkpoint_id).in_(checkpoint_ids)
        ),
        "tagged": select(Tag.resource_id).where(
            or_(
                and_(col(Tag.resource_type) == ResourceType.job, col(Tag.resource_id).in_(job_ids)),
                and_(col(Tag.resource_type) == ResourceType.checkpoint, col(Tag.resource_id).in_(checkpoint_ids)),
            )
        ),
    }


def protection(session: Session, job_ids: list[str], checkpoint_ids: set[str]) -> str | None:
    """Why this work must be kept (``"ckpt_... is registered as a model version"``), or None."""
    for reason, query in protections(job_ids, checkpoint_ids).items():
        protected = session.exec(query.limit(1)).first()
        if protected is not None:
            return f"{protected} is {reason}"
    return None


@dataclass
class RetentionResult:
    finished_before: datetime
    dry_run: bool
    jobs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    artifacts_removed: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (job id, why)
    more: bool = False


def apply_retention(
    session: Session, store: ArtifactStore, finished_before: datetime, *, dry_run: bool, actor: str
) -> RetentionResult:
    """Remove the unprotected finished work older than ``finished_before``, committing job by job (nothing with
    ``dry_run``, which reports what would go); then sweep unreferenced artifacts.

    Each removed job is an audit row of ``actor`` (a key's fingerprint, or ``retention`` for the workers' runs).
    """
    result = RetentionResult(finished_before, dry_run)
    candidates = session.exec(
        select(Job)
        .where(
            col(Job.parent_job_id).is_(None),
            col(Job.status).in_(TERMINAL_STATUSES),
            col(Job.finished_at) < finished_before,
        )
        .order_by(col(Job.finished_at).desc(), col(Job.id))
        .limit(MAX_JOBS_PER_PASS + 1)
    ).all()
    result.more = len(candidates) > MAX_JOBS_PER_PASS
    removed: set[str] = set()  # checkpoints this pass removed (or, dry, would have)
    for job in candidates[:MAX_JOBS_PER_PASS]:
        family = [member.id for member in deletion.job_family(session, job.id)]
        outputs = deletion.job_outputs(session, family)
        reason = protection(session, family, outputs) or _still_needed(session, outputs, removed)
        if reason is not None:
            result.kept.append((job.id, reason))
            continue
        if not dry_run:
            deleted = deletion.delete_jobs(session, store, family, cascade=True)
            detail = deleted.detail(cascade=True) | {"finished_before": finished_before.isoformat()}
            audit.record(session, actor, "retention.delete", "job", job.id, detail)
            result.artifacts_removed += deleted.artifacts
            session.commit()
        removed |= outputs
        result.jobs.append(job.id)
        result.checkpoints += sorted(outputs)
    if not dry_run:
        result.artifacts_removed += store.sweep(session)
        session.commit()
    return result


def _still_needed(session: Session, outputs: set[str], removed: set[str]) -> str | None:
    """Why these outputs must stay although unprotected: newer work was made from them, or a job uses them."""
    made_from = crud.descendant_ids(session, outputs) - outputs - removed
    if made_from:
        return f"{len(made_from)} checkpoints were made from its outputs, e.g. {min(made_from)}"
    for checkpoint_id, job in deletion.checkpoints_in_use(session, outputs).items():
        return f"its output {checkpoint_id} is used by {job.status.value} job {job.id}"
    return None
