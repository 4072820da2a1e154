"""Running totals of finished jobs (``JobTotal``): added to as each job ends, or recounted from the jobs stored.

``add_endings`` runs inside the transition that ends jobs (``app.service.job_status``), as one
``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``: concurrent workers ending jobs of one kind add up in
the database, nobody reads a total to write it back. ``backfill`` rebuilds the totals from the jobs table; the
migration that created the table runs it once, so history from before it is counted the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Float, Integer, Select, case, cast, delete, insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from app.service.tables import DURATION_BUCKETS_S, TERMINAL_STATUSES, Job, JobStatus, JobTotal

BUCKET_COLUMNS = tuple("le_" + f"{bound:g}".replace(".", "_") for bound in DURATION_BUCKETS_S)
# Every column an ending adds to, in the order ``recount`` selects them.
COUNTERS = ("ended", "ran", "run_seconds", *BUCKET_COLUMNS)


def run_seconds(started_at: datetime | None, finished_at: datetime | None) -> float | None:
    """The duration of a job's last run, or None if it never started (cancelled while queued)."""
    if started_at is None or finished_at is None:
        return None
    # Clamped: clocks of different worker machines may disagree by a little.
    return max((finished_at - started_at).total_seconds(), 0.0)


def _increments(kind: str, status: JobStatus, durations_s: list[float | None]) -> dict[str, Any]:
    ran = [seconds for seconds in durations_s if seconds is not None]
    buckets = {
        column: sum(1 for seconds in ran if seconds <= bound)
        for column, bound in zip(BUCKET_COLUMNS, DURATION_BUCKETS_S, strict=True)
    }
    return {
        "kind": kind,
        "status": status,
        "ended": len(durations_s),
        "ran": len(ran),
        "run_seconds": sum(ran),
    } | buckets


def add_endings(
    session: Session, status: JobStatus, endings: Iterable[tuple[str, datetime | None, datetime | None]]
) -> None:
    """Count jobs that just ended with ``status``, given as ``(kind, started_at, finished_at)``, on the caller's
    transaction. Each call must name only jobs whose ending the caller's conditional UPDATE just won.
    """
    durations_by_kind: dict[str, list[float | None]] = defaultdict(list)
    for kind, started_at, finished_at in endings:
        durations_by_kind[kind].append(run_seconds(started_at, finished_at))
    if not durations_by_kind:
        return
    # Sorted: every writer locks the rows of several kinds in one order, so two cancels never deadlock.
    rows = [_increments(kind, status, durations_by_kind[kind]) for kind in sorted(durations_by_kind)]
    upsert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = upsert(JobTotal).values(rows)
    totals = JobTotal.__table__.c  # type: ignore[attr-defined]  # SQLModel adds it at class creation
    session.exec(
        statement.on_conflict_do_update(
            index_elements=["kind", "status"],
            set_={column: totals[column] + statement.excluded[column] for column in COUNTERS},
        )
    )


def recount(dialect: str) -> Select[Any]:
    """The totals as the finished jobs stored give them: ``(kind, status, *COUNTERS)`` per kind and final status.

    The database does the work in one grouped query; each job's duration is computed once (a materialized CTE).
    """
    if dialect == "postgresql":
        seconds: Any = cast(func.extract("epoch", col(Job.finished_at) - col(Job.started_at)), Float)
    else:
        seconds = (_sqlite_microseconds(col(Job.finished_at)) - _sqlite_microseconds(col(Job.started_at))) / 1e6
    finished = (
        # NULL for a job that never started; clamped at 0 like ``run_seconds``.
        select(Job.kind, Job.status, case((seconds < 0, 0.0), else_=seconds).label("seconds"))
        .where(col(Job.status).in_(TERMINAL_STATUSES))
        .cte("finished")
        .prefix_with("MATERIALIZED")
    )
    return sa_select(
        finished.c.kind,
        finished.c.status,
        func.count().label("ended"),
        func.count(finished.c.seconds).label("ran"),
        func.coalesce(func.sum(finished.c.seconds), 0.0).label("run_seconds"),
        *(
            func.count(case((finished.c.seconds <= bound, 1))).label(column)
            for column, bound in zip(BUCKET_COLUMNS, DURATION_BUCKETS_S, strict=True)
        ),
    ).group_by(finished.c.kind, finished.c.status)


def _sqlite_microseconds(stored: Any) -> Any:
    """Microseconds since the epoch of a datetime SQLite holds as ``YYYY-MM-DD HH:MM:SS.ffffff`` (how SQLAlchemy writes
    it): exact, where ``julianday`` keeps milliseconds and rounds, which moves durations across bucket bounds.
    """
    return cast(func.strftime("%s", stored), Integer) * 1_000_000 + cast(func.substr(stored, 21, 6), Integer)


def backfill(connection: Connection) -> None:
    """Replace the totals with ``recount`` of the jobs stored, on the caller's transaction."""
    connection.execute(delete(JobTotal))
    connection.execute(insert(JobTotal).from_select(["kind", "status", *COUNTERS], recount(connection.dialect.name)))
