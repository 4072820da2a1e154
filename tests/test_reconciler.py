"""The reconciler's sweeps against a real database: which parked parents it wakes."""

from datetime import timedelta

from sqlmodel import Session

from app.service.db import get_engine
from app.service.tables import Job, JobStatus, utcnow
from tests.api.conftest import client_for, make_settings
from worker.reconciler import LOST_MESSAGE_AFTER_S, reconcile_once


def test_a_parked_parent_is_woken_only_when_every_child_finished(tmp_path):
    settings = make_settings(tmp_path)
    with client_for(settings):
        parked_since = utcnow() - timedelta(seconds=10 * LOST_MESSAGE_AFTER_S)
        with Session(get_engine(settings)) as session:
            busy = Job(kind="search", status=JobStatus.waiting, heartbeat_at=parked_since)
            done = Job(kind="search", status=JobStatus.waiting, heartbeat_at=parked_since)
            session.add_all([busy, done])
            session.flush()
            session.add_all(
                [
                    Job(kind="search-trial", status=JobStatus.succeeded, parent_job_id=busy.id, child_key="t0"),
                    Job(kind="search-trial", status=JobStatus.running, parent_job_id=busy.id, child_key="t1"),
                    Job(kind="search-trial", status=JobStatus.succeeded, parent_job_id=done.id, child_key="t0"),
                    Job(kind="search-trial", status=JobStatus.cancelled, parent_job_id=done.id, child_key="t1"),
                ]
            )
            session.commit()
            busy_id, done_id = busy.id, done.id
        counts = reconcile_once(settings)
        with Session(get_engine(settings)) as session:
            statuses = {job_id: session.get(Job, job_id).status for job_id in (busy_id, done_id)}
    assert statuses == {busy_id: JobStatus.waiting, done_id: JobStatus.queued}
    assert counts["woken"] == 1
