"""JSON log lines carry the job id: from ``extra``, or from the Celery task a worker is running."""

import json
import logging
import sys

from celery.signals import task_postrun, task_prerun

from app.logs import JsonFormatter, bind_job_id_to_celery_tasks


def record(message: str, *args, **extra) -> logging.LogRecord:
    return logging.getLogger("recomb.worker").makeRecord(
        "recomb.worker", logging.INFO, __file__, 1, message, args, None, extra=extra
    )


def test_a_record_is_one_json_object_with_its_extra_fields():
    line = JsonFormatter().format(record("job %s: %s", "job_1", "succeeded", job_id="job_1", attempt=2))
    entry = json.loads(line)
    assert entry["message"] == "job job_1: succeeded"
    assert (entry["level"], entry["logger"], entry["job_id"], entry["attempt"]) == ("INFO", "recomb.worker", "job_1", 2)
    assert entry["ts"].endswith("+00:00")


def test_records_logged_while_a_task_runs_carry_its_job_id():
    bind_job_id_to_celery_tasks()
    formatter = JsonFormatter()
    task_prerun.send(sender=None, task_id="celery-task-1", task=None, args=["job_42"], kwargs={})
    try:
        assert json.loads(formatter.format(record("claimed")))["job_id"] == "job_42"
    finally:
        task_postrun.send(sender=None, task_id="celery-task-1", task=None, args=["job_42"], kwargs={})
    assert "job_id" not in json.loads(formatter.format(record("idle")))


def test_exceptions_are_kept_in_one_line():
    try:
        raise ValueError("bad input")
    except ValueError:
        failing = logging.getLogger("recomb.worker").makeRecord(
            "recomb.worker", logging.ERROR, __file__, 1, "job failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(failing)
    assert "\n" not in line and "ValueError: bad input" in json.loads(line)["exc_info"]
