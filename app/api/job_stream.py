"""Live job progress as server-sent events, read from the database.

Any API process can serve a job's stream: it polls the job row at a short
interval and emits a ``job`` event whenever what a person would see changed
(status, progress, stage, error, report, children finished), and a comment
line as a heartbeat when nothing did for a while, so proxies keep the
connection open. The stream ends after the first terminal status.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass

import anyio
from fastapi.sse import ServerSentEvent
from sqlmodel import Session, func, select

from app.service.db import get_engine
from app.service.tables import TERMINAL_STATUSES, Job, JobStatus, Report
from app.settings import Settings

POLL_INTERVAL_S = 0.25
HEARTBEAT_INTERVAL_S = 10.0  # below the common 30-60 s idle timeouts of proxies
RECONNECT_AFTER_MS = 1000


@dataclass(frozen=True)
class JobSnapshot:
    """What a watcher sees of a job at one instant (the ``data`` of a ``job`` event)."""

    id: str
    kind: str
    status: str
    progress: float
    stage: str
    error: str | None
    report_id: str | None
    children_total: int
    children_finished: int

    @property
    def terminal(self) -> bool:
        return self.status in {status.value for status in TERMINAL_STATUSES}


def read_snapshot(settings: Settings, job_id: str) -> JobSnapshot | None:
    """The job's current snapshot, in one short transaction (None if the row is gone)."""
    # A short-lived session: on SQLite every transaction holds the write lock, so none may stay open while streaming.
    with Session(get_engine(settings)) as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        report_id = session.exec(select(Report.id).where(Report.job_id == job_id)).first()
        counts = dict(
            session.exec(select(Job.status, func.count()).where(Job.parent_job_id == job_id).group_by(Job.status)).all()
        )
    return JobSnapshot(
        id=job.id,
        kind=job.kind,
        status=JobStatus(job.status).value,
        progress=round(float(job.progress), 4),
        stage=job.stage,
        error=job.error,
        report_id=report_id,
        children_total=sum(counts.values()),
        children_finished=sum(count for status, count in counts.items() if status in TERMINAL_STATUSES),
    )


async def job_event_stream(
    load_snapshot: Callable[[], JobSnapshot | None],
    poll_interval_s: float = POLL_INTERVAL_S,
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
) -> AsyncIterator[ServerSentEvent]:
    """Yield a ``job`` event per change of ``load_snapshot()``, heartbeats in between; stop after a terminal one.

    ``load_snapshot`` is blocking (a database read) and runs in a worker
    thread. Events are numbered from 1 in their ``id``. A job deleted while
    watched ends the stream with a ``gone`` event.
    """
    previous: JobSnapshot | None = None
    sequence = 0
    last_sent = time.monotonic()
    while True:
        snapshot = await anyio.to_thread.run_sync(load_snapshot)
        if snapshot is None:
            yield ServerSentEvent(event="gone", data={"detail": "job no longer exists"})
            return
        if snapshot != previous:
            sequence += 1
            retry = RECONNECT_AFTER_MS if previous is None else None
            yield ServerSentEvent(event="job", id=str(sequence), data=asdict(snapshot), retry=retry)
            previous, last_sent = snapshot, time.monotonic()
            if snapshot.terminal:
                return
        elif time.monotonic() - last_sent >= heartbeat_interval_s:
            yield ServerSentEvent(comment="heartbeat")
            last_sent = time.monotonic()
        await anyio.sleep(poll_interval_s)
