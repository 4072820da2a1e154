"""Prometheus metrics, computed from the database (and broker) at scrape time.

Nothing is counted in process memory, so any number of API processes give
the same answer and a restart loses nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnreachable
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, Integer, Select, case, cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from app.contracts.job_kinds import JOB_KINDS
from app.service.db import get_engine
from app.service.queue import queue_depth
from app.service.tables import TERMINAL_STATUSES, Checkpoint, Job, JobStatus, Report
from app.settings import Settings

# Seconds; from a 50 ms PTQ job to an hour-long search.
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class RecombCollector(Collector):
    """Jobs by kind and status, job durations, queue depth, checkpoints and reports."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery

    def collect(self) -> Iterator[Metric]:
        with Session(get_engine(self.settings)) as session:
            job_counts = session.exec(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
            durations = session.connection().execute(duration_histograms(session.get_bind().dialect.name)).all()
            checkpoint_counts = session.exec(select(Checkpoint.format, func.count()).group_by(Checkpoint.format)).all()
            report_counts = session.exec(
                select(Report.kind, Report.passed, func.count()).group_by(col(Report.kind), col(Report.passed))
            ).all()
        yield self._jobs(job_counts)
        yield self._durations(durations)
        yield from self._queue()
        checkpoints = GaugeMetricFamily("recomb_checkpoints", "Stored checkpoints by format.", labels=["format"])
        for checkpoint_format, count in checkpoint_counts:
            checkpoints.add_metric([checkpoint_format], count)
        yield checkpoints
        reports = GaugeMetricFamily(
            "recomb_reports", "Reports by kind and whether they passed.", labels=["kind", "passed"]
        )
        for kind, passed, count in report_counts:
            reports.add_metric([kind, str(bool(passed)).lower()], count)
        yield reports

    @staticmethod
    def _jobs(counts: Sequence[tuple[Any, ...]]) -> GaugeMetricFamily:
        by_key = {(kind, JobStatus(status).value): count for kind, status, count in counts}
        # Every known kind gets every status (0 included), so series do not vanish between scrapes.
        kinds = sorted(set(JOB_KINDS) | {kind for kind, _ in by_key})
        gauge = GaugeMetricFamily("recomb_jobs", "Jobs by kind and status.", labels=["kind", "status"])
        for kind in kinds:
            for status in JobStatus:
                gauge.add_metric([kind, status.value], by_key.get((kind, status.value), 0))
        return gauge

    @staticmethod
    def _durations(rows: Sequence[tuple[Any, ...]]) -> HistogramMetricFamily:
        per_bucket: dict[tuple[str, JobStatus], list[int]] = {}
        total_s: dict[tuple[str, JobStatus], float] = {}
        for kind, status, bucket, count, seconds in rows:
            key = (kind, JobStatus(status))
            per_bucket.setdefault(key, [0] * (len(DURATION_BUCKETS_S) + 1))[bucket] += count
            total_s[key] = total_s.get(key, 0.0) + float(seconds)
        histogram = HistogramMetricFamily(
            "recomb_job_duration_seconds",
            "Run time of finished jobs (started_at to finished_at of their last run), by kind and final status.",
            labels=["kind", "status"],
        )
        for (kind, status), counts in sorted(per_bucket.items()):
            cumulative = list(itertools.accumulate(counts))
            buckets = [(str(bound), n) for bound, n in zip(DURATION_BUCKETS_S, cumulative, strict=False)]
            buckets.append(("+Inf", cumulative[-1]))
            histogram.add_metric([kind, status.value], buckets, sum_value=total_s[(kind, status)])
        return histogram

    def _queue(self) -> Iterator[GaugeMetricFamily]:
        broker_up = GaugeMetricFamily("recomb_broker_up", "1 if the broker answered the queue-depth query.")
        try:
            depth = queue_depth(self.celery)
        except ChannelError:
            depth = 0  # Redis deletes an empty list: a queue that does not exist holds no messages
        except BrokerUnreachable:
            broker_up.add_metric([], 0)
            yield broker_up
            return
        broker_up.add_metric([], 1)
        yield broker_up
        yield GaugeMetricFamily("recomb_queue_depth", "Job messages waiting in the broker queue.", value=depth)


def duration_histograms(dialect: str) -> Select[str, JobStatus, int, int, float]:
    """Finished jobs per kind, final status and duration bucket (the index of the first bound they fit, or
    ``len(DURATION_BUCKETS_S)`` past the last): ``(kind, status, bucket, count, summed seconds)``.

    The database does the counting, in one grouped query that returns a few rows per kind and status however many
    jobs finished; the duration is computed once per job (a materialized CTE), not once per bucket.
    """
    if dialect == "postgresql":
        seconds: Any = cast(func.extract("epoch", col(Job.finished_at) - col(Job.started_at)), Float)
    else:
        seconds = (_sqlite_microseconds(col(Job.finished_at)) - _sqlite_microseconds(col(Job.started_at))) / 1e6
    finished = (
        # Clamped: clocks of different worker machines may disagree by a little.
        select(Job.kind, Job.status, case((seconds < 0, 0.0), else_=seconds).label("seconds"))
        .where(
            col(Job.status).in_(TERMINAL_STATUSES), col(Job.started_at).is_not(None), col(Job.finished_at).is_not(None)
        )
        .cte("finished")
        .prefix_with("MATERIALIZED")
    )
    bucket = case(
        *((finished.c.seconds <= bound, index) for index, bound in enumerate(DURATION_BUCKETS_S)),
        else_=len(DURATION_BUCKETS_S),
    ).label("bucket")
    return sa_select(finished.c.kind, finished.c.status, bucket, func.count(), func.sum(finished.c.seconds)).group_by(
        finished.c.kind, finished.c.status, bucket
    )


def _sqlite_microseconds(stored: Any) -> Any:
    """Microseconds since the epoch of a datetime SQLite holds as ``YYYY-MM-DD HH:MM:SS.ffffff`` (how SQLAlchemy writes
    it): exact, where ``julianday`` keeps milliseconds and rounds, which moves durations across bucket bounds.
    """
    return cast(func.strftime("%s", stored), Integer) * 1_000_000 + cast(func.substr(stored, 21, 6), Integer)


def render_metrics(settings: Settings, celery: Celery) -> bytes:
    """The Prometheus text exposition of ``RecombCollector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecombCollector(settings, celery))
    return generate_latest(registry)
