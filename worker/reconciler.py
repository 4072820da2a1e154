"""Re-publish jobs whose message was lost and re-queue jobs whose worker died.

Runs as a thread in every worker process. Each fix is a conditional UPDATE,
so several reconcilers never publish the same job twice for one lapse, and a
duplicate message is harmless anyway: the runner's claim lets only one run.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from app.core.config import Settings
from app.core.db import get_engine
from app.core.queue import get_celery, publish, queue_depth
from app.models import TERMINAL_STATUSES, Job, JobStatus, utcnow

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
        for job in session.exec(select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < stale)).all():
            if job.attempts >= settings.max_attempts:
                values = {"status": JobStatus.failed, "finished_at": now, "claim_token": None, "error": f"worker lost {job.attempts} times; giving up"}
                key = "failed"
            else:
                values = {"status": JobStatus.queued, "claim_token": None, "stage": "re-queued after worker loss", "published_at": now}
                key = "requeued"
            if _conditional_update(session, job, values):
                counts[key] += 1
                if key == "requeued":
                    publish(job.id, job.kind)
        # A composite job whose children all finished but that was never woken (e.g. a child cancelled while queued).
        unfinished_child = select(Job.id).where(Job.parent_job_id == Job.__table__.c.id, Job.status.not_in(TERMINAL_STATUSES))
        parked_before = now - timedelta(seconds=LOST_MESSAGE_AFTER_S)
        stranded = select(Job).where(Job.status == JobStatus.waiting, Job.heartbeat_at < parked_before, ~unfinished_child.exists())
        for job in session.exec(stranded).all():
            if _conditional_update(session, job, {"status": JobStatus.queued, "published_at": now}):
                counts["woken"] += 1
                publish(job.id, job.kind)
        lost_before = now - timedelta(seconds=LOST_MESSAGE_AFTER_S if empty_queue else settings.requeue_after_s)
        for job in session.exec(select(Job).where(Job.status == JobStatus.queued, Job.published_at < lost_before)).all():
            if _conditional_update(session, job, {"published_at": now}):
                counts["republished"] += 1
                publish(job.id, job.kind)
    if any(counts.values()):
        log.warning("reconciler: %s", counts)
    return counts


def _conditional_update(session: Session, job: Job, values: dict) -> bool:
    result = session.exec(
        update(Job).where(Job.id == job.id, Job.status == job.status, Job.published_at == job.published_at, Job.attempts == job.attempts).values(**values)
    )
    session.commit()
    return result.rowcount == 1


def _queue_is_empty() -> bool:
    try:
        return queue_depth(get_celery()) == 0
    except Exception:  # broker down: treat as unknown, fall back to the long timeout
        log.warning("reconciler: broker unreachable", exc_info=False)
        return False


def start_reconciler(settings: Settings, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(settings.reconcile_interval_s):
            try:
                reconcile_once(settings)
            except OperationalError:
                log.warning("reconciler: database unreachable")
            except Exception:
                log.exception("reconciler pass failed")

    thread = threading.Thread(target=loop, daemon=True, name="reconciler")
    thread.start()
    return thread
