"""Admission of new jobs: how much work one may ask for, and how many may wait.

Work: a job's network calls and multiply-adds (``core.work``), estimated from
its params and input sizes, must stay within ``RECOMB_MAX_JOB_CALLS`` and
``RECOMB_MAX_JOB_MULTIPLY_ADDS``, and every state buffer it names within
``RECOMB_MAX_STATE_VALUES``; beyond one, a 422 names the figure, the limit
and the setting that raises it. (What is valid at all, e.g. at most 100,000
epochs, is checked by the ``core`` configs themselves.)

Queue: once ``RECOMB_MAX_QUEUED_JOBS`` jobs are queued, a caller may queue
more only while it holds less than its fair share, the bound divided by the
number of callers (API keys) with queued jobs, itself included; otherwise
429 with Retry-After. The backlog stays bounded (at most twice the bound,
give or take what other API processes admit within ``QUEUE_COUNTS_MAX_AGE_S``),
and one busy client cannot lock the others out. Each API process reads the
counts at most every ``QUEUE_COUNTS_MAX_AGE_S`` and adds its own admissions
at once, so a submission costs no extra query while the queue is busy.
"""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException, status
from sqlmodel import Session, func, select

from app.api.errors import unprocessable
from app.service.tables import Job, JobStatus
from app.settings import Settings
from core.work import Work

QUEUE_FULL_RETRY_AFTER_S = 1
QUEUE_COUNTS_MAX_AGE_S = 0.25


def check_work(kind: str, work: Work, settings: Settings) -> None:
    """422 when ``work`` exceeds either budget."""
    budgets = (
        ("network calls", work.calls, settings.max_job_calls, "RECOMB_MAX_JOB_CALLS"),
        ("multiply-adds", work.multiply_adds, settings.max_job_multiply_adds, "RECOMB_MAX_JOB_MULTIPLY_ADDS"),
    )
    for what, figure, budget, setting in budgets:
        if figure > budget:
            raise unprocessable(
                f"this {kind} job needs about {figure:.3g} {what} ({work.detail}), "
                f"over the budget of {budget:.3g}; {setting} raises it"
            )


def check_state_values(field: str, rows: int, width: int, settings: Settings) -> None:
    """422 when a state buffer of ``rows`` x ``width`` would exceed ``RECOMB_MAX_STATE_VALUES``."""
    if rows * width > settings.max_state_values:
        raise unprocessable(
            f"{field} would hold {rows} x {width} = {rows * width} values, "
            f"over the limit of {settings.max_state_values}; RECOMB_MAX_STATE_VALUES raises it"
        )


class QueueCounts:
    """Queued jobs per owner as one API process sees them.

    Read from the database at most every ``QUEUE_COUNTS_MAX_AGE_S``, plus this process's own admissions since.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self, session: Session) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._read_at > QUEUE_COUNTS_MAX_AGE_S:
                self._counts = dict(
                    session.exec(
                        select(Job.owner, func.count()).where(Job.status == JobStatus.queued).group_by(Job.owner)
                    ).all()
                )
                self._read_at = time.monotonic()
            return dict(self._counts)

    def admitted(self, owner: str) -> None:
        with self._lock:
            self._counts[owner] = self._counts.get(owner, 0) + 1


def check_queue(session: Session, settings: Settings, counts_seen: QueueCounts, owner: str) -> None:
    """429 with Retry-After when the queue is past its bound and ``owner`` holds its fair share of it."""
    counts = counts_seen.current(session)
    queued = sum(counts.values())
    bound = settings.max_queued_jobs
    if queued < bound:
        return
    share = max(1, bound // len(counts.keys() | {owner}))
    held = counts.get(owner, 0)
    if held < share:
        return
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"{queued} jobs are queued, past the bound of {bound} (RECOMB_MAX_QUEUED_JOBS), and this caller holds {held}, "
        f"its fair share being {share}; retry once some have started",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
    )
