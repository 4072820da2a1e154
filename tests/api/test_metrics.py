"""``GET /metrics``: Prometheus text from the database and the broker; finished jobs from running totals."""

import threading
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, col, select

from app.service import job_status, job_totals
from app.service.db import get_engine
from app.service.tables import DURATION_BUCKETS_S, TERMINAL_STATUSES, Job, JobStatus, JobTotal, Report, utcnow
from tests.api.conftest import client_for, make_settings


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample as ``{(name, sorted label pairs): value}``."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def add_finished_job(settings, kind: str, status: JobStatus, seconds: float) -> None:
    """A job stored finished, as history from before the running totals: counted the way the migration counts it."""
    finished_at = utcnow()
    with Session(get_engine(settings)) as session:
        session.add(
            Job(
                kind=kind,
                params={},
                status=status,
                started_at=finished_at - timedelta(seconds=seconds),
                finished_at=finished_at,
            )
        )
        session.commit()
    with get_engine(settings).begin() as connection:
        job_totals.backfill(connection)


def test_jobs_by_kind_and_status_and_duration_histograms(client, settings):
    add_finished_job(settings, "distill", JobStatus.succeeded, 0.2)
    add_finished_job(settings, "distill", JobStatus.succeeded, 4.0)
    add_finished_job(settings, "distill", JobStatus.failed, 40.0)
    with Session(get_engine(settings)) as session:
        session.add(Job(kind="ptq", params={}, status=JobStatus.running, started_at=utcnow()))
        session.commit()
    samples = scrape(client)
    jobs = lambda kind, status: samples[("recomb_jobs", (("kind", kind), ("status", status)))]  # noqa: E731
    assert (
        jobs("distill", "succeeded"),
        jobs("distill", "failed"),
        jobs("ptq", "running"),
        jobs("ptq", "succeeded"),
    ) == (2, 1, 1, 0)
    assert jobs("crossover", "queued") == 0  # every known kind is reported, so its series never vanish
    bucket = lambda status, le: samples[
        ("recomb_job_duration_seconds_bucket", (("kind", "distill"), ("le", le), ("status", status)))
    ]  # noqa: E731
    assert (bucket("succeeded", "0.25"), bucket("succeeded", "5.0"), bucket("succeeded", "+Inf")) == (1, 2, 2)
    assert (bucket("failed", "30.0"), bucket("failed", "60.0")) == (0, 1)
    assert samples[("recomb_job_duration_seconds_count", (("kind", "distill"), ("status", "succeeded")))] == 2
    assert (
        abs(samples[("recomb_job_duration_seconds_sum", (("kind", "distill"), ("status", "succeeded")))] - 4.2) < 1e-3
    )
    # A running job has no duration yet.
    assert not any(name.startswith("recomb_job_duration") and ("kind", "ptq") in labels for name, labels in samples)


def test_queue_depth_checkpoints_and_reports(client, settings, parent_id):
    assert scrape(client)[("recomb_queue_depth", ())] == 0
    job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()  # no worker runs here: it stays queued
    with Session(get_engine(settings)) as session:
        session.add(Report(job_id=job["id"], kind="ptq", schema_version="1.0", passed=False, body={}))
        session.commit()
    samples = scrape(client)
    assert samples[("recomb_queue_depth", ())] == 1 and samples[("recomb_broker_up", ())] == 1
    assert samples[("recomb_checkpoints", (("format", "float32"),))] == 1
    assert samples[("recomb_reports", (("kind", "ptq"), ("passed", "false")))] == 1


def test_metrics_need_the_api_key_when_keys_are_set(tmp_path):
    with client_for(make_settings(tmp_path, api_keys="scrape-key")) as client:
        assert client.get("/metrics").status_code == 401
        assert scrape(client, Authorization="Bearer scrape-key")[("recomb_queue_depth", ())] == 0


def queued_job(settings, kind: str = "ptq") -> str:
    with Session(get_engine(settings)) as session:
        job = Job(kind=kind, params={})
        session.add(job)
        session.commit()
        return job.id


def end_job(settings, job_id: str, status: JobStatus, ran_s: float | None, *, given_up: bool = False) -> None:
    """End a queued job through the real transitions: a worker claims it (its run began ``ran_s`` ago) and finishes
    it with ``status`` (or the reconciler gives up on it, ``given_up``); ``ran_s=None`` cancels it while still queued
    (no run, no duration).
    """
    with Session(get_engine(settings), expire_on_commit=False) as session:
        if ran_s is None:
            job_status.cancel(session, job_id)
        else:
            now = utcnow()
            started = now - timedelta(seconds=ran_s)
            token = f"token-{job_id}"
            assert job_status.claim(session, job_id, token=token, worker="host:1", now=started, stale_before=started)
            if given_up:
                job = session.get(Job, job_id)
                assert job is not None and job_status.give_up(session, job, now, "worker lost 3 times; giving up")
            else:
                if status == JobStatus.cancelled:
                    job_status.cancel(session, job_id)  # a running job is flagged; its worker then ends it
                assert job_status.finish(session, job_id, token, status, None)
        session.commit()


def job_series(samples: dict) -> dict:
    """The samples of the job families, which must only ever grow for finished jobs."""
    return {key: value for key, value in samples.items() if key[0].startswith("recomb_job")}


def test_deleting_jobs_and_retention_lower_no_counter(sqlite_and_postgres_settings):
    settings = sqlite_and_postgres_settings
    with client_for(settings) as client:
        succeeded, failed, cancelled = (queued_job(settings) for _ in range(3))
        end_job(settings, succeeded, JobStatus.succeeded, 0.2)
        end_job(settings, failed, JobStatus.failed, 40.0)
        end_job(settings, cancelled, JobStatus.cancelled, None)
        before = job_series(scrape(client))
        jobs = lambda status: before[("recomb_jobs", (("kind", "ptq"), ("status", status)))]  # noqa: E731
        assert (jobs("succeeded"), jobs("failed"), jobs("cancelled"), jobs("queued")) == (1, 1, 1, 0)
        assert (
            before[("recomb_job_duration_seconds_bucket", (("kind", "ptq"), ("le", "0.25"), ("status", "succeeded")))]
            == 1
        )

        assert client.delete(f"/jobs/{succeeded}").status_code == 200
        with Session(get_engine(settings)) as session:  # the other two finished long ago: retention takes them
            for job_id in (failed, cancelled):
                job = session.get(Job, job_id)
                assert job is not None
                job.finished_at = utcnow() - timedelta(days=40)
                session.add(job)
            session.commit()
        retained = client.post("/admin/retention", params={"older_than_days": 30})
        assert retained.status_code == 200 and sorted(retained.json()["jobs"]) == sorted([failed, cancelled])
        assert all(client.get(f"/jobs/{job_id}").status_code == 404 for job_id in (succeeded, failed, cancelled))
        assert job_series(scrape(client)) == before


def expected_totals(settings) -> dict:
    """The totals recomputed in Python from every finished job stored: ``{(kind, status): (ended, ran, buckets)}``
    and ``{(kind, status): summed seconds}``.
    """
    counts, sums = {}, {}
    with Session(get_engine(settings)) as session:
        for job in session.exec(select(Job).where(col(Job.status).in_(TERMINAL_STATUSES))).all():
            key = (job.kind, JobStatus(job.status))
            ended, ran, buckets = counts.get(key, (0, 0, (0,) * len(DURATION_BUCKETS_S)))
            seconds = None
            if job.started_at is not None and job.finished_at is not None:
                seconds = max((job.finished_at - job.started_at).total_seconds(), 0.0)
            if seconds is not None:
                buckets = tuple(n + (seconds <= bound) for n, bound in zip(buckets, DURATION_BUCKETS_S, strict=True))
                sums[key] = sums.get(key, 0.0) + seconds
            counts[key] = (ended + 1, ran + (seconds is not None), buckets)
    return {"counts": counts, "sums": sums}


def stored_totals(settings) -> dict:
    counts, sums = {}, {}
    with Session(get_engine(settings)) as session:
        for total in session.exec(select(JobTotal)).all():
            key = (total.kind, JobStatus(total.status))
            buckets = tuple(getattr(total, column) for column in job_totals.BUCKET_COLUMNS)
            counts[key] = (total.ended, total.ran, buckets)
            if total.ran:
                sums[key] = total.run_seconds
    return {"counts": counts, "sums": sums}


def assert_same_totals(actual: dict, expected: dict) -> None:
    assert actual["counts"] == expected["counts"]
    assert actual["sums"].keys() == expected["sums"].keys()
    for key, seconds in expected["sums"].items():
        assert abs(actual["sums"][key] - seconds) < 1e-6, key


def test_totals_equal_a_recount_of_the_jobs_table(sqlite_and_postgres_settings):
    settings = sqlite_and_postgres_settings
    endings = [
        ("ptq", JobStatus.succeeded, 0.01),
        ("ptq", JobStatus.succeeded, 0.3),
        ("ptq", JobStatus.succeeded, 7.0),
        ("ptq", JobStatus.failed, 40.0),
        ("ptq", JobStatus.failed, 5000.0),  # past the last bound: given up on by the reconciler, below
        ("ptq", JobStatus.cancelled, None),
        ("distill", JobStatus.succeeded, 700.0),
        ("distill", JobStatus.cancelled, 2.0),
        ("distill", JobStatus.cancelled, None),
    ]
    with client_for(settings) as client:
        for kind, status, ran_s in endings:
            end_job(settings, queued_job(settings, kind), status, ran_s, given_up=ran_s == 5000.0)
        queued_job(settings, "distill")  # unfinished: not in the totals
        expected = expected_totals(settings)
        assert expected["counts"][("ptq", JobStatus.succeeded)][:2] == (3, 3)
        assert expected["counts"][("ptq", JobStatus.failed)][2][-1] == 1  # 5000 s is past 3600: only in +Inf
        assert expected["counts"][("distill", JobStatus.cancelled)][:2] == (2, 1)
        assert_same_totals(stored_totals(settings), expected)

        samples = scrape(client)
        ptq_failed = (("kind", "ptq"), ("status", "failed"))
        assert samples[("recomb_job_duration_seconds_count", ptq_failed)] == 2
        assert abs(samples[("recomb_job_duration_seconds_sum", ptq_failed)] - 5040.0) < 0.5
        assert samples[("recomb_jobs", (("kind", "distill"), ("status", "cancelled")))] == 2
        assert samples[("recomb_jobs", (("kind", "distill"), ("status", "queued")))] == 1

        # The back-fill (what the migration runs on history) computes the same totals in SQL.
        with get_engine(settings).begin() as connection:
            job_totals.backfill(connection)
        assert_same_totals(stored_totals(settings), expected)


def test_concurrent_endings_of_one_kind_all_count(sqlite_and_postgres_settings):
    settings = sqlite_and_postgres_settings
    with client_for(settings) as client:
        job_ids = [queued_job(settings) for _ in range(8)]
        start = threading.Barrier(len(job_ids))

        def end(job_id: str) -> None:
            start.wait()  # the first ending of a kind inserts its row; the others race for it
            end_job(settings, job_id, JobStatus.succeeded, 1.5)

        threads = [threading.Thread(target=end, args=(job_id,)) for job_id in job_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        samples = scrape(client)
        ptq = (("kind", "ptq"), ("status", "succeeded"))
        assert samples[("recomb_jobs", ptq)] == 8
        assert (
            samples[("recomb_job_duration_seconds_bucket", (("kind", "ptq"), ("le", "2.5"), ("status", "succeeded")))]
            == 8
        )
        assert_same_totals(stored_totals(settings), expected_totals(settings))
