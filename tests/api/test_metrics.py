"""``GET /metrics``: Prometheus text computed from the database and the broker at scrape time."""

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from app.service.db import get_engine
from app.service.tables import Job, JobStatus, Report, utcnow
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
