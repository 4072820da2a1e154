"""Keep the log records of a job's run in ``job_logs``, so ``GET /jobs/{id}/logs`` serves them.

A ``JobLogCapture`` is attached to the root logger while one job runs. It
keeps the records that carry that job's id (``extra={"job_id": ...}`` or the
bound ``app.logs.current_job_id``), buffers them, and writes them in batches:
when ``FLUSH_LINES`` are waiting, when a record arrives ``FLUSH_INTERVAL_S``
after the last write, on every heartbeat, and once at the end of the run. A
job keeps at most ``RECOMB_MAX_JOB_LOG_LINES`` lines over all its runs
(a composite job runs once per wake-up); past that one marker line says so and
later records are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from app.logs import current_job_id
from app.service.db import get_engine
from app.service.tables import JobLog
from app.settings import Settings

FLUSH_LINES = 100
FLUSH_INTERVAL_S = 1.0
MESSAGE_MAX_CHARS = 8000
LOGGER_MAX_CHARS = 200


class JobLogCapture(logging.Handler):
    """A logging handler that stores one job's records in batches (see the module docstring)."""

    def __init__(self, job_id: str, settings: Settings) -> None:
        super().__init__(level=logging.NOTSET)
        self.job_id = job_id
        self.settings = settings
        self.max_lines = settings.max_job_log_lines
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        # One writer at a time, so batches reach the table (and get their ids) in the order they were logged.
        self._write_lock = threading.Lock()
        self._writing = threading.local()
        self._last_write = time.monotonic()
        with Session(get_engine(settings)) as session:
            # Lines kept by earlier runs of this job (a redelivery, a composite job's earlier wake-ups).
            self._kept = session.exec(select(func.count()).where(col(JobLog.job_id) == job_id)).one()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._writing, "active", False):
            return  # a record logged by our own database write (a driver warning) must not recurse into it
        if (getattr(record, "job_id", None) or current_job_id.get()) != self.job_id:
            return
        with self._pending_lock:
            if self._kept > self.max_lines:
                return  # the marker line is already kept: everything later is dropped
            if self._kept == self.max_lines:
                self._pending.append(self._marker(record))
            else:
                self._pending.append(self._line(record))
            self._kept += 1
            due = len(self._pending) >= FLUSH_LINES or time.monotonic() - self._last_write >= FLUSH_INTERVAL_S
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines in one transaction; lines that cannot be written (database down) are dropped."""
        with self._write_lock:
            with self._pending_lock:
                rows, self._pending = self._pending, []
                self._last_write = time.monotonic()
            if not rows:
                return
            self._writing.active = True
            try:
                with get_engine(self.settings).begin() as connection:
                    connection.execute(insert(JobLog), rows)
            except SQLAlchemyError:
                pass  # a job's log is a convenience: losing a batch must not fail the job it describes
            finally:
                self._writing.active = False

    def close(self) -> None:
        self.flush()
        super().close()

    def _line(self, record: logging.LogRecord) -> dict[str, Any]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        return {
            "job_id": self.job_id,
            "level": record.levelname[:16],
            "logged_at": datetime.fromtimestamp(record.created, UTC),
            "logger": record.name[:LOGGER_MAX_CHARS],
            "message": message[:MESSAGE_MAX_CHARS],
        }

    def _marker(self, record: logging.LogRecord) -> dict[str, Any]:
        return self._line(record) | {
            "level": "WARNING",
            "logger": "recomb.worker",
            "message": f"log capped at {self.max_lines} lines (RECOMB_MAX_JOB_LOG_LINES); later lines dropped",
        }
