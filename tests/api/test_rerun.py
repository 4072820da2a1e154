"""``POST /jobs/{id}/rerun``: a new job of the same kind with the same params, through the submission's own checks."""

from sqlmodel import Session

from app.service.db import get_engine
from app.service.queue import make_celery, queue_depth
from app.service.tables import Job
from tests.api.conftest import client_for, make_settings


def test_a_rerun_is_a_new_queued_job_with_the_same_kind_and_params(client, settings, parent_id):
    first = client.post("/jobs/ptq", json={"checkpoint_id": parent_id, "mode": "static", "granularity": "per_channel"})
    assert first.status_code == 202, first.text
    original = first.json()
    response = client.post(f"/jobs/{original['id']}/rerun")
    assert response.status_code == 202, response.text
    rerun = response.json()
    assert rerun["id"] != original["id"]
    assert (rerun["kind"], rerun["status"], rerun["attempts"]) == ("ptq", "queued", 0)
    assert rerun["params"] == original["params"]
    assert rerun["params"]["mode"] == "static" and rerun["params"]["granularity"] == "per_channel"
    assert queue_depth(make_celery(settings)) == 2  # published like any submission
    assert client.get("/jobs", params={"kind": "ptq"}).json()["total"] == 2


def test_a_rerun_with_an_idempotency_key_queues_one_job(client, parent_id):
    original = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
    headers = {"Idempotency-Key": "rerun-once"}
    first = client.post(f"/jobs/{original['id']}/rerun", headers=headers).json()
    again = client.post(f"/jobs/{original['id']}/rerun", headers=headers).json()
    assert first["id"] == again["id"] != original["id"]
    assert client.get("/jobs").json()["total"] == 2


def test_rerun_refuses_unknown_jobs_and_the_children_of_composite_jobs(client, settings, parent_id):
    missing = client.post("/jobs/job_00000000000000000000/rerun")
    assert missing.status_code == 404 and "job_00000000000000000000" in missing.json()["detail"]
    assert client.post("/jobs/../rerun").status_code == 404
    search = client.post("/jobs/search", json={"parent_a_id": parent_id, "parent_b_id": parent_id}).json()
    with Session(get_engine(settings)) as session:
        trial = Job(
            kind="search-trial",
            params={"parent_a_id": parent_id, "parent_b_id": parent_id, "search": {}, "trial_index": 0},
            parent_job_id=search["id"],
            child_key="trial-0",
        )
        session.add(trial)
        session.commit()
        trial_id = trial.id
    refused = client.post(f"/jobs/{trial_id}/rerun")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"job {trial_id} is a search-trial job made by job {search['id']}; rerun that job instead"
    )


def test_a_rerun_is_admitted_like_a_submission(tmp_path):
    settings = make_settings(tmp_path, max_queued_jobs=1)
    with client_for(settings) as client:
        parent_id = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        original = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
        full = client.post(f"/jobs/{original['id']}/rerun")
        assert full.status_code == 429 and "RECOMB_MAX_QUEUED_JOBS" in full.json()["detail"]
        assert client.get("/jobs").json()["total"] == 1


def test_a_rerun_whose_stored_params_no_longer_validate_is_422(client, settings, parent_id):
    original = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
    with Session(get_engine(settings)) as session:
        row = session.get(Job, original["id"])
        row.params = {**row.params, "mode": "fancy"}
        session.commit()
    refused = client.post(f"/jobs/{original['id']}/rerun")
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith(f"the params of job {original['id']} no longer validate")
    assert "mode" in refused.json()["detail"]
