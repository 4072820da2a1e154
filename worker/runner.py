"""The job runner shared by every job kind.

It owns what no task should repeat: claiming the job, status and
timestamps, progress and stage, the heartbeat, cancellation, error capture
and the single transaction that writes all outputs. A task only loads its
inputs, calls ``core`` and hands its outputs to the ``JobContext``.

Exactly-once outputs: a job is claimed with a conditional UPDATE that sets a
fresh claim token, and its outputs are written in the same transaction that
moves it to ``succeeded`` *only if that token still holds*. A redelivered
message for a finished job, or a second copy racing the first, writes nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from app import crud
from app.core.config import Settings, get_settings
from app.core.db import get_engine
from app.jobs import JOB_PARAMS, JobParams, StatesSpec
from app.core.queue import publish
from app.models import TERMINAL_STATUSES, Checkpoint, Job, JobStatus, Report, new_id, utcnow
from app.store import get_store
from core import artifacts
from core.validate import SCHEMA_VERSION

log = logging.getLogger("recomb.worker")
PROGRESS_MIN_INTERVAL_S = 0.2
CHECKPOINT_CACHE_SIZE = 256
ERROR_MAX_CHARS = 500
DB_RETRY_DEADLINE_S = 60.0
T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a running job when a cancel was requested."""


class WaitForChildren(Exception):
    """Raised by a composite job to sleep until its children finish.

    ``seen_finished`` is how many children were finished when the job looked;
    ``wake_interval_s`` None wakes it whenever one more finishes, otherwise
    only once all have, or when one finishes at least that long after it parked.
    """

    def __init__(self, seen_finished: int, wake_interval_s: float | None) -> None:
        super().__init__(seen_finished)
        self.seen_finished = seen_finished
        self.wake_interval_s = wake_interval_s


@dataclass(frozen=True)
class ChildJob:
    """What a composite job sees of one of its children."""

    id: str
    key: str
    kind: str
    status: JobStatus
    error: str | None
    output_checkpoint_ids: list[str]
    report: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass
class PendingCheckpoint:
    id: str
    checkpoint: artifacts.Checkpoint
    name: str | None
    lineage: list[tuple[str, str]]


@dataclass
class JobContext:
    """What a task sees: its params, its inputs by id, and where its outputs go."""

    job_id: str
    kind: str
    params: Any
    settings: Settings
    claim_token: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    outputs: list[PendingCheckpoint] = field(default_factory=list)
    report: dict[str, Any] | None = None
    _last_progress_at: float = 0.0

    def _session(self) -> Session:
        return Session(get_engine(self.settings), expire_on_commit=False)

    def checkpoint(self, checkpoint_id: str) -> artifacts.Checkpoint:
        """A stored network (read-only: it may be shared with later jobs of this process)."""
        return _cached_checkpoint(self.settings.resolved_database_url, self.settings.artifact_store, str(self.settings.resolved_artifact_dir), checkpoint_id)

    def states(self, spec: StatesSpec, input_dim: int) -> torch.Tensor:
        """The ``(n, input_dim)`` float32 states a job asked for."""
        with self._session() as session:
            return torch.from_numpy(crud.read_states(session, get_store(self.settings), spec.id, spec.synthetic_spec(), input_dim))

    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Record progress (0..1) and stage; raises ``JobCancelled`` if a cancel was requested.

        Writes are throttled (one per 0.2 s) so a tight training loop does not
        hammer the database; the final status write sets the last stage anyway.
        """
        if self.cancel_event.is_set():
            raise JobCancelled()
        now = time.monotonic()
        if now - self._last_progress_at < PROGRESS_MIN_INTERVAL_S and fraction < 1.0:
            return
        self._last_progress_at = now
        self._write_progress(fraction, stage)

    def _write_progress(self, fraction: float | None, stage: str | None) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if fraction is not None:
            values["progress"] = max(0.0, min(1.0, float(fraction)))
        if stage is not None:
            values["stage"] = stage[:200]
        with self._session() as session:
            session.exec(update(Job).where(Job.id == self.job_id, Job.claim_token == self.claim_token).values(**values))
            session.commit()

    def add_checkpoint(self, checkpoint: artifacts.Checkpoint, *, name: str | None = None, lineage: list[tuple[str, str]] = ()) -> str:
        """Queue an output checkpoint with ``(parent_id, role)`` edges; returns its future id."""
        pending = PendingCheckpoint(new_id("ckpt"), checkpoint, name, list(lineage))
        self.outputs.append(pending)
        return pending.id

    def persist_checkpoint(self, checkpoint: artifacts.Checkpoint, *, name: str, output_index: int) -> str:
        """Store an output now, not at the end (a composite job's children need it); once per index."""
        with self._session() as session:
            existing = session.exec(select(Checkpoint.id).where(Checkpoint.created_by_job == self.job_id, Checkpoint.output_index == output_index)).first()
            if existing is not None:
                return existing
            row = crud.create_checkpoint(session, get_store(self.settings), checkpoint, name=name, job_id=self.job_id, output_index=output_index)
            session.commit()
            return row.id

    def on_epoch(self, total_epochs: int, label: str, start: float = 0.05, end: float = 0.9) -> Callable[[Any], None]:
        """A training callback that maps epochs onto ``[start, end]`` of the job's progress."""

        def record(epoch_metrics: Any) -> None:
            done = epoch_metrics.epoch / max(total_epochs, 1)
            self.progress(start + (end - start) * done, f"{label}: epoch {epoch_metrics.epoch}/{total_epochs}")

        return record

    def children(self) -> dict[str, ChildJob]:
        """This job's children by key, with their outputs and report bodies."""
        with self._session() as session:
            rows = session.exec(select(Job).where(Job.parent_job_id == self.job_id).order_by(Job.created_at)).all()
            ids = [row.id for row in rows]
            reports = dict(session.exec(select(Report.job_id, Report.body).where(Report.job_id.in_(ids))).all()) if ids else {}
            outputs: dict[str, list[str]] = {}
            if ids:
                query = select(Checkpoint.created_by_job, Checkpoint.id).where(Checkpoint.created_by_job.in_(ids)).order_by(Checkpoint.output_index)
                for job_id, checkpoint_id in session.exec(query).all():
                    outputs.setdefault(job_id, []).append(checkpoint_id)
            return {
                row.child_key: ChildJob(row.id, row.child_key, row.kind, row.status, row.error, outputs.get(row.id, []), reports.get(row.id))
                for row in rows
            }

    def spawn(self, children: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Create child jobs ``(key, kind, params)`` in one transaction, then publish them, in order.

        Keys already taken by this job's children are skipped, so a re-run creates nothing twice.
        """
        with self._session() as session:
            existing = set(session.exec(select(Job.child_key).where(Job.parent_job_id == self.job_id)).all())
            created = [
                Job(kind=kind, params=JOB_PARAMS[kind].model_validate(params).model_dump(mode="json", exclude_none=True), parent_job_id=self.job_id, child_key=key, published_at=utcnow())
                for key, kind, params in children
                if key not in existing
            ]
            session.add_all(created)
            session.commit()
            published = [(child.id, child.kind) for child in created]
        for child_id, kind in published:
            publish(child_id, kind)

    def wait_for_children(self, children: dict[str, ChildJob], wake_interval_s: float | None = None) -> None:
        """Park this job until children finish (never returns); see ``WaitForChildren`` for ``wake_interval_s``.

        A pipeline wakes on every child, to start the stages that became ready;
        a search only needs all of a rung, plus a partial leaderboard now and then.
        """
        raise WaitForChildren(sum(child.finished for child in children.values()), wake_interval_s)

    def set_summary(self, summary: dict[str, Any]) -> None:
        """Publish partial results (e.g. a leaderboard so far) on the job itself."""
        with self._session() as session:
            session.exec(update(Job).where(Job.id == self.job_id, Job.claim_token == self.claim_token).values(summary=summary))
            session.commit()

    def set_report(self, body: dict[str, Any]) -> None:
        """The job's report; ``schema_version``, ``kind``, ``job_id`` and ``torch_version`` are filled in."""
        if "passed" not in body:
            raise ValueError("a report needs a top-level 'passed'")
        self.report = {"schema_version": SCHEMA_VERSION, "kind": self.kind, **body, "job_id": self.job_id, "torch_version": torch.__version__}


@functools.lru_cache(maxsize=CHECKPOINT_CACHE_SIZE)
def _cached_checkpoint(database_url: str, artifact_store: str, artifact_dir: str, checkpoint_id: str) -> artifacts.Checkpoint:
    """Checkpoints never change once stored, so a worker decodes each one once (search trials share two parents)."""
    settings = Settings(database_url=database_url, artifact_store=artifact_store, artifact_dir=artifact_dir)
    with Session(get_engine(settings)) as session:
        row = session.get(Checkpoint, checkpoint_id)
        if row is None:
            raise LookupError(f"checkpoint {checkpoint_id} not found")
        return crud.read_checkpoint(session, get_store(settings), row)


def with_db_retries(action: Callable[[], T], deadline_s: float = DB_RETRY_DEADLINE_S) -> T:
    """Run ``action``, retrying with exponential backoff while the database is unreachable."""
    delay, started = 0.25, time.monotonic()
    while True:
        try:
            return action()
        except OperationalError:
            if time.monotonic() - started > deadline_s:
                raise
            log.warning("database unreachable; retrying in %.2fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def claim(job_id: str, settings: Settings) -> str | None:
    """Atomically take the job if it is queued (or running with a dead heartbeat); returns the claim token."""
    token = uuid.uuid4().hex
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_s)
    with Session(get_engine(settings)) as session:
        result = session.exec(
            update(Job)
            .where(
                Job.id == job_id,
                or_(Job.status == JobStatus.queued, and_(Job.status == JobStatus.running, Job.heartbeat_at < stale)),
            )
            .values(status=JobStatus.running, claim_token=token, attempts=Job.attempts + 1, started_at=now, heartbeat_at=now, stage="starting", error=None)
        )
        session.commit()
        return token if result.rowcount == 1 else None


def finish(context: JobContext, status: JobStatus, error: str | None = None) -> bool:
    """Write outputs (on success) and the final status in one transaction, if the claim still holds."""
    settings = context.settings
    store = get_store(settings)
    with Session(get_engine(settings), expire_on_commit=False) as session:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error, "claim_token": None}
        if status == JobStatus.succeeded:
            values.update(progress=1.0, stage="done")
        result = session.exec(update(Job).where(Job.id == context.job_id, Job.claim_token == context.claim_token).values(**values))
        if result.rowcount != 1:
            session.rollback()
            return False
        if status == JobStatus.succeeded:
            _write_outputs(session, store, context)
        session.commit()
        return True


def park(context: JobContext, waiting: WaitForChildren) -> None:
    """Move a composite job to ``waiting``; re-queue it at once if what it waits for happened meanwhile."""
    with Session(get_engine(context.settings)) as session:
        result = session.exec(
            update(Job)
            .where(Job.id == context.job_id, Job.claim_token == context.claim_token)
            .values(status=JobStatus.waiting, claim_token=None, attempts=0, heartbeat_at=utcnow(), wake_interval_s=waiting.wake_interval_s)
        )
        if result.rowcount != 1:
            session.rollback()
            return
        finished, unfinished = _children_counts(session, context.job_id)
        requeue = finished != waiting.seen_finished and (waiting.wake_interval_s is None or unfinished == 0)
        if requeue:
            session.exec(update(Job).where(Job.id == context.job_id).values(status=JobStatus.queued, published_at=utcnow()))
        session.commit()
    if requeue:
        publish(context.job_id, context.kind, urgent=True)


def wake_parent(settings: Settings, parent_id: str) -> None:
    """A child finished: re-queue its parent if the parent is waiting for this (see ``WaitForChildren``).

    Each child checks after its own commit, so of two children finishing at
    once at least one sees the other finished: the last one always wakes it.
    """
    with Session(get_engine(settings)) as session:
        parent = session.exec(select(Job.kind, Job.wake_interval_s, Job.heartbeat_at).where(Job.id == parent_id)).one()
        if parent.wake_interval_s is not None:
            _, unfinished = _children_counts(session, parent_id)
            parked_for_s = (utcnow() - parent.heartbeat_at).total_seconds() if parent.heartbeat_at else float("inf")
            if unfinished and parked_for_s < parent.wake_interval_s:
                return
        result = session.exec(update(Job).where(Job.id == parent_id, Job.status == JobStatus.waiting).values(status=JobStatus.queued, published_at=utcnow()))
        session.commit()
    if result.rowcount == 1:
        publish(parent_id, parent.kind, urgent=True)


def _children_counts(session: Session, parent_id: str) -> tuple[int, int]:
    """(finished, unfinished) children of a job."""
    rows = session.exec(select(Job.status, func.count()).where(Job.parent_job_id == parent_id).group_by(Job.status)).all()
    finished = sum(count for status, count in rows if status in TERMINAL_STATUSES)
    return finished, sum(count for _, count in rows) - finished


def _write_outputs(session: Session, store, context: JobContext) -> None:
    for index, pending in enumerate(context.outputs):
        crud.create_checkpoint(session, store, pending.checkpoint, checkpoint_id=pending.id, name=pending.name, job_id=context.job_id, output_index=index)
        session.flush()
        for parent_id, role in pending.lineage:
            crud.add_lineage(session, parent_id, pending.id, role, context.job_id)
    if context.report is not None:
        body = context.report
        session.add(Report(job_id=context.job_id, kind=body["kind"], schema_version=str(body["schema_version"]), passed=bool(body["passed"]), body=body))


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    """Beat every ``heartbeat_interval_s`` and notice cancel requests, until ``stop``."""
    while not stop.wait(context.settings.heartbeat_interval_s):
        try:
            with context._session() as session:
                session.exec(update(Job).where(Job.id == context.job_id, Job.claim_token == context.claim_token).values(heartbeat_at=utcnow()))
                job = session.get(Job, context.job_id)
                session.commit()
                if job is not None and job.cancel_requested:
                    context.cancel_event.set()
        except OperationalError:
            log.warning("heartbeat for %s failed: database unreachable", context.job_id)


def one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:ERROR_MAX_CHARS]


def run_job(job_id: str, handler: Callable[[JobContext], None], settings: Settings | None = None) -> JobStatus | None:
    """Claim and run one job; returns its final status, or None if there was nothing to run."""
    settings = settings or get_settings()
    token = with_db_retries(lambda: claim(job_id, settings))
    if token is None:
        log.info("job %s: nothing to run (finished, cancelled or running elsewhere)", job_id)
        return None
    with Session(get_engine(settings)) as session:
        job = session.get(Job, job_id)
        params: JobParams = JOB_PARAMS[job.kind].model_validate(job.params)
        cancel_requested, parent_job_id = job.cancel_requested, job.parent_job_id
    context = JobContext(job_id=job_id, kind=job.kind, params=params, settings=settings, claim_token=token)
    if cancel_requested:
        context.cancel_event.set()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(context, stop), daemon=True, name=f"heartbeat-{job_id}")
    beat.start()
    status, error = JobStatus.succeeded, None
    try:
        if context.cancel_event.is_set():
            raise JobCancelled()
        # Outside the throttle, so a short wake-up of a composite job can still record its progress.
        context._write_progress(None, "running")
        handler(context)
    except WaitForChildren as waiting:
        with_db_retries(lambda: park(context, waiting))
        log.info("job %s: waiting for its children", job_id)
        return JobStatus.waiting
    except JobCancelled:
        status, error = JobStatus.cancelled, None
    except OperationalError:
        # The database went away mid-job: leave the claim; the reconciler re-queues it once heartbeats stop.
        log.exception("job %s: database unreachable, leaving it for the reconciler", job_id)
        raise
    except Exception as exc:  # any failure of the job's own code fails the job, not the worker
        log.exception("job %s failed", job_id)
        status, error = JobStatus.failed, one_line(exc)
    finally:
        stop.set()
    written = with_db_retries(lambda: finish(context, status, error))
    log.info("job %s: %s%s", job_id, status.value, "" if written else " (claim lost; outputs discarded)")
    if written and parent_job_id:
        with_db_retries(lambda: wake_parent(settings, parent_job_id))
    return status if written else None
