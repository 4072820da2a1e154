"""Logging set-up: JSON lines for the service processes, with the job id as a field.

``recomb api`` and ``recomb worker`` log one JSON object per line (``ts``,
``level``, ``logger``, ``message``, ``job_id`` when one is known, any
``extra`` fields, ``exc_info``), which log shippers index without parsing
prose. The job id comes from ``extra={"job_id": ...}`` or, in a worker, from
the Celery task being run: every job message carries only the job id.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``job_id`` from ``extra`` or the current job."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or current_job_id.get()
        if job_id:
            entry["job_id"] = job_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, json_lines: bool) -> None:
    """Send every logger's records to stderr, as JSON lines or as plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def bind_job_id_to_celery_tasks() -> None:
    """In a worker: while a job's task runs, its records carry that job id (the task's only argument)."""
    from celery.signals import task_postrun, task_prerun  # here, so the client commands start without Celery

    task_prerun.connect(_bind_job_id, weak=False)
    task_postrun.connect(_unbind_job_id, weak=False)


def _bind_job_id(args: tuple | list | None = None, **_: Any) -> None:
    current_job_id.set(str(args[0]) if args else None)


def _unbind_job_id(**_: Any) -> None:
    current_job_id.set(None)
