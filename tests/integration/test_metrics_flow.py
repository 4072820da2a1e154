"""``/metrics`` on each stack with real workers: a job a worker finishes is counted once, in its transaction."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def finished_ptq(stack) -> dict[str, float]:
    """The succeeded-PTQ series: jobs, histogram count and sum, and jobs in the 60 s bucket."""
    response = stack.client.get("/metrics")
    assert response.status_code == 200, response.text
    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.labels.get("kind") == "ptq" and sample.labels.get("status") == "succeeded"
    }
    return {
        "jobs": samples[("recomb_jobs", None)],
        "count": samples.get(("recomb_job_duration_seconds_count", None), 0.0),
        "sum": samples.get(("recomb_job_duration_seconds_sum", None), 0.0),
        "within_60s": samples.get(("recomb_job_duration_seconds_bucket", "60.0"), 0.0),
    }


def test_a_job_a_worker_finishes_counts_once(stack):
    parent = stack.client.post("/checkpoints/synthetic", json={"seed": 3}).json()
    before = finished_ptq(stack)
    queued = stack.client.post("/jobs/ptq", json={"checkpoint_id": parent["id"], "mode": "dynamic"})
    job = stack.wait_job(queued.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    after = finished_ptq(stack)
    assert (after["jobs"], after["count"], after["within_60s"]) == (
        before["jobs"] + 1,
        before["count"] + 1,
        before["within_60s"] + 1,
    )
    assert after["sum"] > before["sum"]
    assert finished_ptq(stack) == after  # a second scrape counts nothing again
