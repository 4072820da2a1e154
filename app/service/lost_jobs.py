"""Jobs whose worker is gone: back on the queue, or failed after ``max_attempts``.

The reconciler finds them by their stale heartbeat; ``recomb up`` at once, by the host:pid of a worker it saw die.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.service import job_status
from app.service.db import get_engine
from app.service.queue import publish
from app.service.tables import Job, JobStatus, utcnow
from app.settings import Settings


def requeue_lost(session: Session, job: Job, settings: Settings) -> str | None:
    """Re-queue (and publish) ``job``, or fail it after ``max_attempts``: "requeued", "failed", or None if it
    changed since it was read.
    """
    now = utcnow()
    if job.attempts >= settings.max_attempts:
        given_up = job_status.give_up(session, job, now, f"worker lost {job.attempts} times; giving up")
        session.commit()
        return "failed" if given_up else None
    requeued = job_status.requeue_lost(session, job, now)
    session.commit()
    if not requeued:
        return None
    publish(job.id, job.kind)
    return "requeued"


def requeue_jobs_of(settings: Settings, claimed_by: str) -> int:
    """Re-queue at once the running jobs of a worker known to be dead (``host:pid``); returns how many."""
    requeued = 0
    with Session(get_engine(settings)) as session:
        running = select(Job).where(col(Job.status) == JobStatus.running, col(Job.claimed_by) == claimed_by)
        for job in session.exec(running).all():
            requeued += requeue_lost(session, job, settings) == "requeued"
    return requeued
