"""Maintenance on demand: retention (what the workers also apply every ``RECOMB_RETENTION_INTERVAL_S``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, AuthDep, SessionDep, SettingsDep, StoreDep
from app.api.errors import unprocessable
from app.api.schemas import RetentionKept, RetentionPublic
from app.service import retention
from app.service.tables import utcnow

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AuthDep])


@router.post("/retention", response_model=RetentionPublic)
def apply_retention(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    caller: AdminDep,
    dry_run: Annotated[bool, Query(description="report what would be removed, remove nothing")] = False,
    older_than_days: Annotated[
        int | None, Query(ge=1, le=100_000, description="the age cutoff; default RECOMB_RETENTION_DAYS")
    ] = None,
) -> RetentionPublic:
    """Remove finished work older than the cutoff that nothing protects (registered outputs, work made from it,
    jobs using it), then unreferenced artifacts; returns what was removed and what was kept, and why.
    """
    days = older_than_days or settings.retention_days
    if not days:
        raise unprocessable("older_than_days is required while RECOMB_RETENTION_DAYS is 0 (retention off)")
    result = retention.apply_retention(session, store, utcnow() - timedelta(days=days), dry_run=dry_run, actor=caller)
    return RetentionPublic(
        dry_run=result.dry_run,
        finished_before=result.finished_before,
        jobs=result.jobs,
        checkpoints=result.checkpoints,
        artifacts_removed=result.artifacts_removed,
        kept=[RetentionKept(job_id=job_id, reason=reason) for job_id, reason in result.kept],
        more=result.more,
    )
