"""The one writer of ``Job.status``: every transition of a job's lifecycle, each a conditional UPDATE.

A transition names the state it leaves (or the claim token that proves the
caller still owns the job), so two writers racing for one job never both
win: the loser's UPDATE matches no row and it learns so from the returned
flag. The runner (claim, finish, park, wake), the reconciler (re-queue,
give up, wake stranded, re-publish) and the cancel route go through here;
``tests/test_job_status.py`` checks by AST that no other module writes a
job's status. Functions execute on the caller's session and leave the
commit to it, so a transition can share a transaction with its outputs.
Every transition to a terminal status adds the job to the running totals
``/metrics`` reads (``app.service.job_totals``) and its webhook events
(``app.service.webhook_outbox``) in the same transaction: once per ending.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Row
from sqlmodel import Session, col

from app.service import job_totals, webhook_outbox
from app.service.tables import Job, JobStatus, utcnow

CANCELLABLE_AT_ONCE = (JobStatus.queued, JobStatus.waiting)


# What a transition to a terminal status returns of each job it ended: enough to count and announce the ending.
ENDING = (col(Job.id), col(Job.kind), col(Job.started_at), col(Job.finished_at))


def _changed(session: Session, statement: Any) -> bool:
    return bool(session.exec(statement).rowcount == 1)


def _count_endings(session: Session, ended: Sequence[Row], status: JobStatus) -> None:
    """Add the jobs a transition just ended to the running totals and the webhook outbox, in its transaction."""
    job_totals.add_endings(session, status, [(job.kind, job.started_at, job.finished_at) for job in ended])
    webhook_outbox.add_job_events(session, [job.id for job in ended], status)


def claim(
    session: Session, job_id: str, *, token: str, worker: str, now: datetime, stale_before: datetime
) -> Row | None:
    """queued (or running with a heartbeat older than ``stale_before``) -> running under ``token``.

    Returns the job's kind, params, cancel flag, parent and publish time, or None if it was not claimable.
    """
    return session.exec(
        update(Job)
        .where(
            col(Job.id) == job_id,
            or_(
                col(Job.status) == JobStatus.queued,
                and_(col(Job.status) == JobStatus.running, col(Job.heartbeat_at) < stale_before),
            ),
        )
        .values(
            status=JobStatus.running,
            claim_token=token,
            claimed_by=worker,
            attempts=col(Job.attempts) + 1,
            started_at=now,
            heartbeat_at=now,
            stage="running",
            error=None,
        )
        .returning(
            col(Job.kind), col(Job.params), col(Job.cancel_requested), col(Job.parent_job_id), col(Job.published_at)
        )
    ).first()


def finish(
    session: Session, job_id: str, claim_token: str, status: JobStatus, error: str | None, **values: Any
) -> bool:
    """running -> succeeded, failed or cancelled, if ``claim_token`` still holds; ``values`` are written with it."""
    if status == JobStatus.succeeded:
        values |= {"progress": 1.0, "stage": "done"}
    ended = session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.claim_token) == claim_token)
        .values(**values, status=status, finished_at=utcnow(), error=error, claim_token=None)
        .returning(*ENDING)
    ).all()
    _count_endings(session, ended, status)
    return bool(ended)


def hold_for_children(session: Session, job_id: str, claim_token: str) -> bool:
    """A heartbeat of a running job that is not flagged to cancel, taking its row lock until the caller commits.

    A parent creates its children after this, in the same transaction. ``cancel`` flags the parent before it
    cancels the children, so the two serialize on the parent's row: either the children are committed first and
    the cancel finds them, or the cancel is committed first and this returns False (spawn nothing).
    """
    return _changed(
        session,
        update(Job)
        .where(col(Job.id) == job_id, col(Job.claim_token) == claim_token, col(Job.cancel_requested).is_(False))
        .values(heartbeat_at=utcnow()),
    )


def park(session: Session, job_id: str, claim_token: str, wake_interval_s: float | None, **values: Any) -> bool:
    """running -> waiting (a composite job sleeping until its children finish), if ``claim_token`` still holds."""
    return _changed(
        session,
        update(Job)
        .where(col(Job.id) == job_id, col(Job.claim_token) == claim_token)
        .values(
            **values,
            status=JobStatus.waiting,
            claim_token=None,
            attempts=0,
            heartbeat_at=utcnow(),
            wake_interval_s=wake_interval_s,
        ),
    )


def wake(session: Session, job_id: str) -> bool:
    """waiting -> queued, to be published again."""
    return _changed(
        session,
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.waiting)
        .values(status=JobStatus.queued, published_at=utcnow()),
    )


def _if_unchanged(job: Job) -> Any:
    """The job is still as ``job`` was read: same status, publish time and attempts."""
    return and_(
        col(Job.id) == job.id,
        col(Job.status) == job.status,
        col(Job.published_at) == job.published_at,
        col(Job.attempts) == job.attempts,
    )


def requeue_lost(session: Session, job: Job, now: datetime) -> bool:
    """running (its worker gone) -> queued, if unchanged since read."""
    return _changed(
        session,
        update(Job)
        .where(_if_unchanged(job))
        .values(status=JobStatus.queued, claim_token=None, stage="re-queued after worker loss", published_at=now),
    )


def wake_stranded(session: Session, job: Job, now: datetime) -> bool:
    """waiting (all children finished, never woken) -> queued, if unchanged since read."""
    return _changed(session, update(Job).where(_if_unchanged(job)).values(status=JobStatus.queued, published_at=now))


def give_up(session: Session, job: Job, now: datetime, error: str) -> bool:
    """running -> failed after too many lost workers, if unchanged since read."""
    ended = session.exec(
        update(Job)
        .where(_if_unchanged(job))
        .values(status=JobStatus.failed, finished_at=now, claim_token=None, error=error)
        .returning(*ENDING)
    ).all()
    _count_endings(session, ended, JobStatus.failed)
    return bool(ended)


def republish(session: Session, job: Job, now: datetime) -> bool:
    """A queued job whose message was lost stays queued with a new publish time, if unchanged since read."""
    return _changed(session, update(Job).where(_if_unchanged(job)).values(published_at=now))


def cancel(session: Session, job_id: str) -> None:
    """Cancel a job and its children: queued or waiting ones at once, running ones flagged to stop at their next step.

    Both statements name the state they change, so a job a worker claimed or
    finished since it was read keeps what the worker wrote.
    """
    family = or_(col(Job.id) == job_id, col(Job.parent_job_id) == job_id)
    # Flag first: a parent creating children holds its row (``hold_for_children``) until they are committed,
    # so the statement below then sees them.
    session.exec(update(Job).where(family, col(Job.status) == JobStatus.running).values(cancel_requested=True))
    cancelled = session.exec(
        update(Job)
        .where(family, col(Job.status).in_(CANCELLABLE_AT_ONCE))
        .values(status=JobStatus.cancelled, finished_at=utcnow(), stage="cancelled")
        .returning(*ENDING)
    ).all()
    # Running ones end later, through ``finish``, which counts them and adds their events then.
    _count_endings(session, cancelled, JobStatus.cancelled)
