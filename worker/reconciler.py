"""Re-publish jobs whose message was lost and re-queue jobs whose worker died.

Runs as a thread in every worker process. Each fix is a conditional UPDATE,
so several reconcilers never publish the same job twice for one lapse, and a
duplicate message is harmless anyway: the runner's claim lets only one run.
A worker's death is noticed here by its stopped heartbeat; ``recomb up``,
which sees its own workers exit, re-queues their jobs at once with
``app.service.lost_jobs.requeue_jobs_of`` instead of waiting for that. Expired idempotency records
are deleted here too, and with ``RECOMB_RETENTION_DAYS`` set, retention is applied every
``RECOMB_RETENTION_INTERVAL_S`` (``app.service.retention``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.service import job_status, retention
from app.service.db import get_engine
from app.service.lost_jobs import requeue_lost
from app.service.queue import get_celery, publish, queue_depth
from app.service.store import get_store
from app.service.tables import TERMINAL_STATUSES, IdempotencyRecord, Job, JobStatus, utcnow
from app.settings import Settings
from worker.periodic import start_periodic

log = logging.getLogger("recomb.reconciler")
# A queued job older than this while the queue is empty has lost its message.
LOST_MESSAGE_AFTER_S = 5.0


def reconcile_once(settings: Settings) -> dict[str, int]:
    """One pass; returns how many jobs were re-queued, re-published and given up."""
    now = utcnow()
    counts = {"requeued": 0, "republished": 0, "failed": 0, "woken": 0}
    empty_queue = _queue_is_empty()
    with Session(get_engine(settings)) as session:
        stale = now - timedelta(seconds=settings.heartbeat_timeout_s)
        for job in session.exec(
            select(Job).where(col(Job.status) == JobStatus.running, col(Job.heartbeat_at) < stale)
        ).all():
            outcome = requeue_lost(session, job, settings)
            if outcome:
                counts[outcome] += 1
        # A composite job whose children all finished but that was never woken (e.g. a child cancelled while queued).
        # The child is an alias, so the subquery correlates with the outer parent row (a bare Job would
        # compare each row with itself and find no unfinished child anywhere).
        child = aliased(Job)
        unfinished_child = select(child.id).where(
            col(child.parent_job_id) == col(Job.id), col(child.status).not_in(TERMINAL_STATUSES)
        )
        parked_before = now - timedelta(seconds=LOST_MESSAGE_AFTER_S)
        stranded = select(Job).where(
            col(Job.status) == JobStatus.waiting, col(Job.heartbeat_at) < parked_before, ~unfinished_child.exists()
        )
        for job in session.exec(stranded).all():
            if job_status.wake_stranded(session, job, now):
                session.commit()
                counts["woken"] += 1
                publish(job.id, job.kind)
        lost_before = now - timedelta(seconds=LOST_MESSAGE_AFTER_S if empty_queue else settings.requeue_after_s)
        for job in session.exec(
            select(Job).where(col(Job.status) == JobStatus.queued, col(Job.published_at) < lost_before)
        ).all():
            if job_status.republish(session, job, now):
                session.commit()
                counts["republished"] += 1
                publish(job.id, job.kind)
        session.exec(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.created_at) < now - timedelta(seconds=settings.idempotency_window_s)
            )
        )
        session.commit()
    if any(counts.values()):
        log.warning("reconciler: %s", counts)
    return counts


def retention_once(settings: Settings) -> retention.RetentionResult:
    """Remove the unprotected finished work older than ``RECOMB_RETENTION_DAYS``, then unreferenced artifacts."""
    with Session(get_engine(settings), expire_on_commit=False) as session:
        result = retention.apply_retention(
            session,
            get_store(settings),
            utcnow() - timedelta(days=settings.retention_days),
            dry_run=False,
            actor="retention",
        )
    if result.jobs or result.artifacts_removed:
        log.warning(
            "retention: removed %d jobs, %d checkpoints, %d artifacts",
            len(result.jobs),
            len(result.checkpoints),
            result.artifacts_removed,
        )
    return result


def _queue_is_empty() -> bool:
    try:
        return queue_depth(get_celery()) == 0
    except Exception:  # broker down: treat as unknown, fall back to the long timeout
        log.warning("reconciler: broker unreachable", exc_info=False)
        return False


def start_reconciler(settings: Settings, stop: threading.Event) -> threading.Thread:
    next_retention = time.monotonic()

    def run_pass() -> None:
        nonlocal next_retention
        reconcile_once(settings)
        if settings.retention_days and time.monotonic() >= next_retention:
            next_retention = time.monotonic() + settings.retention_interval_s
            retention_once(settings)

    return start_periodic("reconciler", settings.reconcile_interval_s, run_pass, stop, log)
