"""Prometheus metrics, computed from the database (and broker) at scrape time.

Nothing is counted in process memory, so any number of API processes give
the same answer and a restart loses nothing. Finished jobs are read from
their running totals (``JobTotal``, a few rows per kind), unfinished ones
counted by their indexed status: a scrape costs the same however much
history is stored, and deleting history lowers no counter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnreachable
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from app.contracts.job_kinds import JOB_KINDS
from app.service.db import get_engine
from app.service.job_totals import BUCKET_COLUMNS
from app.service.queue import queue_depth
from app.service.tables import (
    DURATION_BUCKETS_S,
    TERMINAL_STATUSES,
    Checkpoint,
    Job,
    JobStatus,
    JobTotal,
    Report,
)
from app.settings import Settings

UNFINISHED_STATUSES = tuple(status for status in JobStatus if status not in TERMINAL_STATUSES)


class RecombCollector(Collector):
    """Jobs by kind and status, job durations, queue depth, checkpoints and reports."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery

    def collect(self) -> Iterator[Metric]:
        with Session(get_engine(self.settings)) as session:
            unfinished = session.exec(
                select(Job.kind, Job.status, func.count())
                .where(col(Job.status).in_(UNFINISHED_STATUSES))
                .group_by(Job.kind, Job.status)
            ).all()
            totals = session.exec(select(JobTotal).order_by(JobTotal.kind, JobTotal.status)).all()
            checkpoint_counts = session.exec(select(Checkpoint.format, func.count()).group_by(Checkpoint.format)).all()
            report_counts = session.exec(
                select(Report.kind, Report.passed, func.count()).group_by(col(Report.kind), col(Report.passed))
            ).all()
        yield self._jobs([*unfinished, *((total.kind, total.status, total.ended) for total in totals)])
        yield self._durations(totals)
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
        gauge = GaugeMetricFamily(
            "recomb_jobs",
            "Jobs by kind and status: unfinished ones stored now, finished ones ever ended (deletion lowers none).",
            labels=["kind", "status"],
        )
        for kind in kinds:
            for status in JobStatus:
                gauge.add_metric([kind, status.value], by_key.get((kind, status.value), 0))
        return gauge

    @staticmethod
    def _durations(totals: Sequence[JobTotal]) -> HistogramMetricFamily:
        histogram = HistogramMetricFamily(
            "recomb_job_duration_seconds",
            "Run time of finished jobs (started_at to finished_at of their last run), by kind and final status.",
            labels=["kind", "status"],
        )
        for total in totals:
            if total.ran == 0:
                continue  # ended without running (cancelled while queued): no duration to show
            buckets = [
                (str(bound), getattr(total, column))
                for bound, column in zip(DURATION_BUCKETS_S, BUCKET_COLUMNS, strict=True)
            ]
            buckets.append(("+Inf", total.ran))
            histogram.add_metric([total.kind, JobStatus(total.status).value], buckets, sum_value=total.run_seconds)
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


def render_metrics(settings: Settings, celery: Celery) -> bytes:
    """The Prometheus text exposition of ``RecombCollector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecombCollector(settings, celery))
    return generate_latest(registry)
