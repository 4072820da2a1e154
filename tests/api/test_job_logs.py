"""A job's own log lines: kept by its worker while it runs, served oldest first with an ``after`` cursor."""

import logging

from sqlalchemy import event
from sqlmodel import Session

import worker.tasks
from app.service.db import get_engine
from app.service.tables import Job
from tests.api.conftest import client_for, make_settings
from worker.log_capture import JobLogCapture
from worker.runner import run_job


def test_a_run_keeps_its_own_lines_and_they_are_read_on_with_after(client, settings, parent_id, caplog):
    caplog.set_level(logging.INFO)  # as `recomb worker` configures it (RECOMB_LOG_LEVEL)
    job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
    assert client.get(f"/jobs/{job['id']}/logs").json() == {"items": [], "next_after": 0, "job_status": "queued"}
    logging.getLogger("recomb.elsewhere").info("not inside any job")
    # A worker's run, in this process, with the real ptq handler.
    assert run_job(job["id"], worker.tasks.HANDLERS["ptq"], settings) == "succeeded"
    page = client.get(f"/jobs/{job['id']}/logs").json()
    messages = [line["message"] for line in page["items"]]
    assert messages[0] == f"job {job['id']}: ptq started"
    assert "quantizing (dynamic)" in messages and "comparing int8 with float" in messages
    assert messages[-1] == f"job {job['id']}: succeeded"
    assert "not inside any job" not in messages
    assert {line["logger"] for line in page["items"]} == {"recomb.worker"}
    assert {line["level"] for line in page["items"]} == {"INFO"}
    ids = [line["id"] for line in page["items"]]
    assert ids == sorted(ids) and page["next_after"] == ids[-1] and page["job_status"] == "succeeded"

    first = client.get(f"/jobs/{job['id']}/logs", params={"limit": 1}).json()
    assert [line["message"] for line in first["items"]] == messages[:1]
    rest = client.get(f"/jobs/{job['id']}/logs", params={"after": first["next_after"]}).json()
    assert [line["message"] for line in rest["items"]] == messages[1:]
    done = client.get(f"/jobs/{job['id']}/logs", params={"after": page["next_after"]}).json()
    assert done == {"items": [], "next_after": page["next_after"], "job_status": "succeeded"}


def test_a_failed_run_keeps_its_traceback(client, settings, parent_id):
    job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()

    def broken(context):
        raise RuntimeError("calibration exploded")

    assert run_job(job["id"], broken, settings) == "failed"
    lines = client.get(f"/jobs/{job['id']}/logs").json()["items"]
    failure = next(line for line in lines if line["level"] == "ERROR")
    assert failure["message"].startswith(f"job {job['id']} failed\nTraceback")
    assert "RuntimeError: calibration exploded" in failure["message"]


def test_lines_past_the_cap_are_dropped_behind_one_marker_over_every_run(tmp_path):
    settings = make_settings(tmp_path, max_job_log_lines=3)
    with client_for(settings) as client:
        synthetic = client.post("/checkpoints/synthetic", json={"seed": 0}).json()
        job_id = client.post("/jobs/ptq", json={"checkpoint_id": synthetic["id"]}).json()["id"]
        log = logging.getLogger("recomb.test")
        for run in range(2):  # a second run (a composite job's wake-up) keeps nothing more
            capture = JobLogCapture(job_id, settings)
            log.addHandler(capture)
            try:
                for index in range(5):
                    log.warning("line %d of run %d", index, run, extra={"job_id": job_id})
                log.warning("another job's line", extra={"job_id": "job_00000000000000000000"})
            finally:
                log.removeHandler(capture)
                capture.close()
        lines = client.get(f"/jobs/{job_id}/logs").json()["items"]
    assert [line["message"] for line in lines] == [
        "line 0 of run 0",
        "line 1 of run 0",
        "line 2 of run 0",
        "log capped at 3 lines (RECOMB_MAX_JOB_LOG_LINES); later lines dropped",
    ]
    assert lines[-1]["level"] == "WARNING"


def test_many_lines_are_written_in_batches_and_all_kept(client, settings, parent_id):
    job_id = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()["id"]
    capture = JobLogCapture(job_id, settings)
    writes = []
    engine = get_engine(settings)

    def count_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO job_logs"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count_insert)
    try:
        log = logging.getLogger("recomb.test.batches")
        log.addHandler(capture)
        for index in range(250):
            log.warning("line %d", index, extra={"job_id": job_id})
        log.removeHandler(capture)
        capture.close()
    finally:
        event.remove(engine, "before_cursor_execute", count_insert)
    # 100 lines a write (a stall of over a second writes what waits early): not one statement per line.
    assert 3 <= len(writes) <= 25
    after, messages = 0, []
    while page := client.get(f"/jobs/{job_id}/logs", params={"after": after}).json()["items"]:
        messages += [line["message"] for line in page]
        after = page[-1]["id"]
    assert messages == [f"line {index}" for index in range(250)]
    with Session(engine) as session:
        assert session.get(Job, job_id).status == "queued"


def test_logs_of_an_unknown_job_are_404_and_a_bad_cursor_422(client):
    missing = client.get("/jobs/job_00000000000000000000/logs")
    assert missing.status_code == 404 and "job_00000000000000000000" in missing.json()["detail"]
    assert client.get("/jobs/not-an-id/logs").status_code == 404
    bad = client.get("/jobs/job_00000000000000000000/logs", params={"after": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "after"]
