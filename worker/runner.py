"""The job runner shared by every job kind.

It owns what no task should repeat: claiming the job, status and
timestamps, progress and stage, the heartbeat, cancellation, error capture
and the single transaction that writes all outputs. A task only loads its
inputs, calls ``core`` and hands its outputs to the ``JobContext``.

Exactly-once outputs: a job is claimed with a conditional UPDATE that sets a
fresh claim token, and its outputs are written in the same transaction that
moves it to ``succeeded`` *only if that token still holds*. A redelivered
message for a finished job, or a second copy racing the first, writes nothing.

Stopping: ``JobContext.interrupt`` is the ``core.interrupt`` callable every
task passes into ``core``. It raises ``JobCancelled`` once a cancel was
requested (the heartbeat thread polls the flag twice a second) and
``JobLimitExceeded`` once the job has run past its kind's time limit or
grown its worker's memory past its kind's memory limit (checked at most
every 0.1 s, so a call costs a flag test and a clock read). Either way the
job ends with a one-line status and the worker takes the next one.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar, cast

import numpy as np
import torch
from sqlalchemy import func, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from app.contracts.job_kinds import JOB_KINDS, JobParams, StatesSpec
from app.contracts.report_models import REPORT_SCHEMA_VERSION, stored_body
from app.logs import current_job_id
from app.service import crud, job_status
from app.service.db import commit_without_flush_wait, get_engine
from app.service.queue import publish
from app.service.store import get_store
from app.service.tables import TERMINAL_STATUSES, Checkpoint, Job, JobStatus, Report, ResourceType, new_id, utcnow
from app.settings import Settings, get_settings
from core import artifacts
from core.metrics import rss_bytes
from worker.log_capture import JobLogCapture

log = logging.getLogger("recomb.worker")
PROGRESS_MIN_INTERVAL_S = 0.2
CHECKPOINT_CACHE_SIZE = 256
ERROR_MAX_CHARS = 500
DB_RETRY_DEADLINE_S = 60.0
CANCEL_POLL_INTERVAL_S = 0.5
LIMIT_CHECK_INTERVAL_S = 0.1
T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a running job when a cancel was requested."""


class JobLimitExceeded(Exception):
    """Raised inside a running job that ran past its kind's time limit or memory limit."""


def worker_identity() -> str:
    """``host:pid`` of this worker process, recorded on the jobs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    def result(self) -> dict[str, Any]:
        """The report of a child that succeeded."""
        if self.report is None:
            raise RuntimeError(f"child {self.key} ({self.status.value}) has no report")
        return self.report

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
    load_s: float = 0.0
    log_capture: JobLogCapture | None = None
    _started_at: float = field(default_factory=time.monotonic)
    _next_limit_check: float = 0.0
    # The latest progress, stage and summary not yet written: the next write, or the run's final one (park, finish),
    # carries them.
    _unwritten: dict[str, Any] = field(default_factory=dict)
    _last_stage: str | None = None

    def __post_init__(self) -> None:
        self.time_limit_s = self.settings.time_limit_s(self.kind)
        self.memory_limit_bytes = self.settings.memory_limit_bytes(self.kind)
        self._rss_at_start = rss_bytes()
        # The claim wrote the start; a run shorter than the throttle interval writes nothing more until its end.
        self._last_progress_at = self._started_at

    def _session(self) -> Session:
        return Session(get_engine(self.settings), expire_on_commit=False)

    def interrupt(self) -> None:
        """The job's ``core.interrupt``: raises ``JobCancelled`` or ``JobLimitExceeded``, else returns at once."""
        if self.cancel_event.is_set():
            raise JobCancelled()
        now = time.monotonic()
        if now < self._next_limit_check:
            return
        self._next_limit_check = now + LIMIT_CHECK_INTERVAL_S
        if now - self._started_at > self.time_limit_s:
            raise JobLimitExceeded(
                f"stopped after {now - self._started_at:.1f} s, over the {self.time_limit_s:g} s time limit of "
                f"{self.kind} jobs "
                "(RECOMB_JOB_TIME_LIMIT_S, or per kind RECOMB_JOB_TIME_LIMITS_S)"
            )
        grown = rss_bytes() - self._rss_at_start
        if grown > self.memory_limit_bytes:
            raise JobLimitExceeded(
                f"stopped after adding {grown / 2**20:.0f} MiB to its worker, over the "
                f"{self.memory_limit_bytes / 2**20:g} MiB memory limit "
                f"of {self.kind} jobs (RECOMB_JOB_MEMORY_LIMIT_MB, or per kind RECOMB_JOB_MEMORY_LIMITS_MB)"
            )

    def checkpoint(self, checkpoint_id: str) -> artifacts.Checkpoint:
        """A stored network (read-only: it may be shared with later jobs of this process)."""
        started = time.perf_counter()
        checkpoint = _cached_checkpoint(
            self.settings.resolved_database_url,
            self.settings.artifact_store,
            str(self.settings.resolved_artifact_dir),
            checkpoint_id,
        )
        self.load_s += time.perf_counter() - started
        return checkpoint

    def states(self, spec: StatesSpec, input_dim: int) -> torch.Tensor:
        """The ``(n, input_dim)`` float32 states a job asked for."""
        started = time.perf_counter()
        self.interrupt()
        with self._session() as session:
            states = torch.from_numpy(
                crud.read_states(session, get_store(self.settings), spec.id, spec.synthetic_spec(), input_dim)
            )
        self.load_s += time.perf_counter() - started
        return states

    def actions(self, spec: StatesSpec) -> np.ndarray | None:
        """The actions recorded with an uploaded state buffer (int64, one per state), or None."""
        if spec.id is None:
            return None
        with self._session() as session:
            return crud.read_actions(session, get_store(self.settings), spec.id)

    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Record progress (0..1) and stage; raises as ``interrupt`` does.

        Writes are throttled (one per 0.2 s) so a tight training loop does not
        hammer the database; the values not written go with the next write or
        with the run's final one (``park``, ``finish``), so a short run costs
        no extra write and still shows where it got to.
        """
        self.interrupt()
        self._unwritten["progress"] = max(0.0, min(1.0, float(fraction)))
        if stage is not None and stage[:200] != self._last_stage:
            self._last_stage = self._unwritten["stage"] = stage[:200]
            log.info("%s", self._last_stage)  # each stage once, so the job's own log tells where it went
        now = time.monotonic()
        if now - self._last_progress_at < PROGRESS_MIN_INTERVAL_S and fraction < 1.0:
            return
        self._last_progress_at = now
        with self._session() as session:
            commit_without_flush_wait(session)
            session.exec(
                update(Job)
                .where(col(Job.id) == self.job_id, col(Job.claim_token) == self.claim_token)
                .values(heartbeat_at=utcnow(), **self.unwritten())
            )
            session.commit()

    def unwritten(self) -> dict[str, Any]:
        """The progress, stage and summary recorded since the last write, now taken by the caller's write."""
        values, self._unwritten = self._unwritten, {}
        return values

    def add_checkpoint(
        self, checkpoint: artifacts.Checkpoint, *, name: str | None = None, lineage: Sequence[tuple[str, str]] = ()
    ) -> str:
        """Queue an output checkpoint with ``(parent_id, role)`` edges; returns its future id.

        ``ValueError`` for a role this job kind did not declare in its ``lineage_roles``.
        """
        declared = JOB_KINDS[self.kind].lineage_roles
        undeclared = sorted({role for _, role in lineage} - declared)
        if undeclared:
            raise ValueError(
                f"{self.kind} jobs record lineage roles {sorted(declared)}, not {undeclared}: declare them in JOB_KINDS"
            )
        pending = PendingCheckpoint(new_id("ckpt"), checkpoint, name, list(lineage))
        self.outputs.append(pending)
        return pending.id

    def persist_checkpoint(self, checkpoint: artifacts.Checkpoint, *, name: str, output_index: int) -> str:
        """Store an output now, not at the end (a composite job's children need it); once per index."""
        with self._session() as session:
            existing = session.exec(
                select(Checkpoint.id).where(
                    Checkpoint.created_by_job == self.job_id, Checkpoint.output_index == output_index
                )
            ).first()
            if existing is not None:
                return existing
            row = crud.create_checkpoint(
                session,
                get_store(self.settings),
                checkpoint,
                name=name,
                job_id=self.job_id,
                output_index=output_index,
                labels=crud.job_labels(session, self.job_id),
            )
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
            rows = session.exec(
                select(Job).where(col(Job.parent_job_id) == self.job_id).order_by(col(Job.created_at))
            ).all()
            ids = [row.id for row in rows]
            reports: dict[str, dict[str, Any]] = {}
            if ids:
                bodies = select(Report.job_id, Report.body).where(col(Report.job_id).in_(ids))
                reports = {job_id: dict(body) for job_id, body in session.exec(bodies).all()}
            outputs: dict[str, list[str]] = {}
            if ids:
                query = (
                    select(Checkpoint.created_by_job, Checkpoint.id)
                    .where(col(Checkpoint.created_by_job).in_(ids))
                    .order_by(col(Checkpoint.output_index))
                )
                for job_id, checkpoint_id in session.exec(query).all():
                    outputs.setdefault(cast(str, job_id), []).append(checkpoint_id)  # one of ids
            children = {}
            for row in rows:
                key = cast(str, row.child_key)  # spawn gives every child a key
                children[key] = ChildJob(
                    row.id, key, row.kind, row.status, row.error, outputs.get(row.id, []), reports.get(row.id)
                )
            return children

    def spawn(self, children: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Create child jobs ``(key, kind, params)`` in one transaction, then publish them, in order.

        Keys already taken by this job's children are skipped, so a re-run
        creates nothing twice. Children belong to this job's owner and are
        filed under its experiment and tags.
        """
        with self._session() as session:
            if not job_status.hold_for_children(session, self.job_id, self.claim_token):
                raise JobCancelled()  # cancelled (or no longer ours) while awake: start no children
            existing = set(session.exec(select(Job.child_key).where(Job.parent_job_id == self.job_id)).all())
            owner = session.exec(select(Job.owner).where(Job.id == self.job_id)).one()
            labels = crud.job_labels(session, self.job_id)
            created = [
                Job(
                    kind=kind,
                    params=JOB_KINDS[kind].params.model_validate(params).stored_params(),
                    parent_job_id=self.job_id,
                    child_key=key,
                    owner=owner,
                    experiment=labels.experiment,
                    published_at=utcnow(),
                )
                for key, kind, params in children
                if key not in existing
            ]
            session.add_all(created)
            for child in created:
                crud.add_tags(session, ResourceType.job, child.id, labels.tags)
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
        """Publish partial results (e.g. a leaderboard so far) on the job itself, with its next write (``progress``,
        ``park``).
        """
        self._unwritten["summary"] = summary

    def set_report(self, body: dict[str, Any]) -> None:
        """The job's report, checked against its kind's ``report_model``; ``schema_version``, ``kind``, ``job_id``
        and ``torch_version`` are filled in. A body that does not fit its model fails the job (``ValidationError``)."""
        report = JOB_KINDS[self.kind].report_model.model_validate(
            {
                **body,
                "schema_version": REPORT_SCHEMA_VERSION,
                "kind": self.kind,
                "job_id": self.job_id,
                "torch_version": torch.__version__,
            }
        )
        self.report = stored_body(report)


@functools.lru_cache(maxsize=CHECKPOINT_CACHE_SIZE)
def _cached_checkpoint(
    database_url: str, artifact_store: str, artifact_dir: str, checkpoint_id: str
) -> artifacts.Checkpoint:
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


Handler = Callable[[JobContext], None]
_handlers: dict[str, Handler] = {}


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``kind`` (a key of ``JOB_KINDS``), once."""
    if kind not in JOB_KINDS:
        raise ValueError(f"no job kind {kind!r} in JOB_KINDS; known: {', '.join(JOB_KINDS)}")

    def register(handler: Handler) -> Handler:
        if kind in _handlers:
            raise ValueError(f"{kind} jobs already have a handler, {_handlers[kind].__module__}")
        _handlers[kind] = handler
        return handler

    return register


def registered_handlers() -> dict[str, Handler]:
    """Every handler registered so far, by job kind."""
    return dict(_handlers)


@dataclass(frozen=True)
class Claim:
    """A job this worker took: its claim token and what the runner needs of its row."""

    token: str
    kind: str
    params: dict[str, Any]
    cancel_requested: bool
    parent_job_id: str | None
    queued_s: float | None


def claim(job_id: str, settings: Settings) -> Claim | None:
    """Atomically take the job if it is queued (or running with a dead heartbeat), in one statement."""
    token = uuid.uuid4().hex
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_s)
    with Session(get_engine(settings)) as session:
        commit_without_flush_wait(session)  # a claim lost in a crash is simply made again
        row = job_status.claim(session, job_id, token=token, worker=worker_identity(), now=now, stale_before=stale)
        session.commit()
    if row is None:
        return None
    published_at = (
        row.published_at.replace(tzinfo=now.tzinfo)
        if row.published_at is not None and row.published_at.tzinfo is None
        else row.published_at
    )
    queued_s = (now - published_at).total_seconds() if published_at is not None else None
    return Claim(token, row.kind, row.params, row.cancel_requested, row.parent_job_id, queued_s)


def finish(context: JobContext, status: JobStatus, error: str | None = None) -> bool:
    """Write outputs (on success) and the final status in one transaction, if the claim still holds."""
    settings = context.settings
    store = get_store(settings)
    with Session(get_engine(settings), expire_on_commit=False) as session:
        finished = job_status.finish(session, context.job_id, context.claim_token, status, error, **context.unwritten())
        if not finished:
            session.rollback()
            return False
        if status == JobStatus.succeeded:
            _write_outputs(session, store, context)
        session.commit()
        return True


def park(context: JobContext, waiting: WaitForChildren) -> None:
    """Move a composite job to ``waiting``; re-queue it at once if what it waits for happened meanwhile."""
    with Session(get_engine(context.settings)) as session:
        parked = job_status.park(
            session, context.job_id, context.claim_token, waiting.wake_interval_s, **context.unwritten()
        )
        if not parked:
            session.rollback()
            return
        finished, unfinished = _children_counts(session, context.job_id)
        requeue = finished != waiting.seen_finished and (waiting.wake_interval_s is None or unfinished == 0)
        if requeue:
            job_status.wake(session, context.job_id)
        session.commit()
    if requeue:
        publish(context.job_id, context.kind, urgent=True)


def wake_parent(settings: Settings, parent_id: str) -> None:
    """A child finished: re-queue its parent if the parent is waiting for this (see ``WaitForChildren``).

    Each child checks after its own commit, so of two children finishing at
    once at least one sees the other finished: the last one always wakes it.
    """
    with Session(get_engine(settings)) as session:
        kind, wake_interval_s, heartbeat_at = session.exec(
            select(Job.kind, Job.wake_interval_s, Job.heartbeat_at).where(col(Job.id) == parent_id)
        ).one()
        if wake_interval_s is not None:
            _, unfinished = _children_counts(session, parent_id)
            parked_for_s = (utcnow() - heartbeat_at).total_seconds() if heartbeat_at else float("inf")
            if unfinished and parked_for_s < wake_interval_s:
                return
        woken = job_status.wake(session, parent_id)
        session.commit()
    if woken:
        publish(parent_id, kind, urgent=True)


def _children_counts(session: Session, parent_id: str) -> tuple[int, int]:
    """(finished, unfinished) children of a job."""
    rows = session.exec(
        select(Job.status, func.count()).where(Job.parent_job_id == parent_id).group_by(Job.status)
    ).all()
    finished = sum(count for status, count in rows if status in TERMINAL_STATUSES)
    return finished, sum(count for _, count in rows) - finished


def _write_outputs(session: Session, store, context: JobContext) -> None:
    """The job's checkpoints, their lineage and its report, filed under the job's experiment and tags."""
    labels = crud.job_labels(session, context.job_id)
    for index, pending in enumerate(context.outputs):
        crud.create_checkpoint(
            session,
            store,
            pending.checkpoint,
            checkpoint_id=pending.id,
            name=pending.name,
            job_id=context.job_id,
            output_index=index,
            labels=labels,
        )
        session.flush()
        for parent_id, role in pending.lineage:
            crud.add_lineage(session, parent_id, pending.id, role, context.job_id)
    if context.report is not None:
        crud.create_report(session, context.job_id, context.report, labels.experiment)


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    """Notice a cancel request within ``CANCEL_POLL_INTERVAL_S`` and beat every ``heartbeat_interval_s``, until
    ``stop``.
    """
    next_beat = time.monotonic() + context.settings.heartbeat_interval_s
    while not stop.wait(min(CANCEL_POLL_INTERVAL_S, context.settings.heartbeat_interval_s)):
        try:
            with context._session() as session:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + context.settings.heartbeat_interval_s
                    commit_without_flush_wait(session)
                    session.exec(
                        update(Job)
                        .where(col(Job.id) == context.job_id, col(Job.claim_token) == context.claim_token)
                        .values(heartbeat_at=utcnow())
                    )
                cancel_requested = session.exec(select(Job.cancel_requested).where(Job.id == context.job_id)).first()
                session.commit()
            if cancel_requested:
                context.cancel_event.set()
            if context.log_capture is not None:
                context.log_capture.flush()  # a quiet stretch of a job still shows its latest lines within a beat
        except OperationalError:
            log.warning("heartbeat for %s failed: database unreachable", context.job_id)


def one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:ERROR_MAX_CHARS]


def run_job(job_id: str, handler: Callable[[JobContext], None], settings: Settings | None = None) -> JobStatus | None:
    """Claim and run one job; returns its final status, or None if there was nothing to run.

    The last log line of a run carries ``timings_ms``: ``queued`` (publish
    to claim), ``claim``, ``load`` (inputs), ``compute`` and ``write``.
    """
    settings = settings or get_settings()
    started = time.perf_counter()
    claimed_job = with_db_retries(lambda: claim(job_id, settings))
    if claimed_job is None:
        log.info("job %s: nothing to run (finished, cancelled or running elsewhere)", job_id)
        return None
    # The job's own log: records logged from here on carry its id and are kept in job_logs (``log_capture``).
    bound = current_job_id.set(job_id)
    capture = with_db_retries(lambda: JobLogCapture(job_id, settings))
    root_logger = logging.getLogger()
    root_logger.addHandler(capture)
    try:
        return _run_claimed(job_id, handler, settings, claimed_job, started, capture)
    finally:
        root_logger.removeHandler(capture)
        capture.close()
        current_job_id.reset(bound)


def _run_claimed(
    job_id: str,
    handler: Callable[[JobContext], None],
    settings: Settings,
    claimed_job: Claim,
    started: float,
    capture: JobLogCapture,
) -> JobStatus | None:
    log.info("job %s: %s started", job_id, claimed_job.kind)
    params: JobParams = JOB_KINDS[claimed_job.kind].params.model_validate(claimed_job.params)
    parent_job_id, queued_s = claimed_job.parent_job_id, claimed_job.queued_s
    claimed = time.perf_counter()
    context = JobContext(
        job_id=job_id,
        kind=claimed_job.kind,
        params=params,
        settings=settings,
        claim_token=claimed_job.token,
        log_capture=capture,
    )
    if claimed_job.cancel_requested:
        context.cancel_event.set()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(context, stop), daemon=True, name=f"heartbeat-{job_id}")
    beat.start()
    status, error = JobStatus.succeeded, None
    try:
        if context.cancel_event.is_set():
            raise JobCancelled()
        handler(context)
    except WaitForChildren as waiting:
        with_db_retries(partial(park, context, waiting))
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
    computed = time.perf_counter()
    written = with_db_retries(lambda: finish(context, status, error))
    timings_ms = {
        "queued": None if queued_s is None else round(queued_s * 1000, 2),
        "claim": round((claimed - started) * 1000, 2),
        "load": round(context.load_s * 1000, 2),
        "compute": round((computed - claimed - context.load_s) * 1000, 2),
        "write": round((time.perf_counter() - computed) * 1000, 2),
    }
    log.info(
        "job %s: %s%s",
        job_id,
        status.value,
        "" if written else " (claim lost; outputs discarded)",
        extra={"timings_ms": timings_ms},
    )
    capture.flush()  # the job's end is in its log before its parent moves on
    if written and parent_job_id:
        with_db_retries(lambda: wake_parent(settings, parent_job_id))
    return status if written else None
