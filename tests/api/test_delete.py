"""Deleting checkpoints and jobs (409 naming what holds them, cascade), artifact collection, and retention."""

import logging
import os
import time

import pytest
from sqlmodel import Session, col, select

import worker.tasks
from app.service.db import get_engine
from app.service.store import SWEEP_GRACE_S, get_store
from app.service.tables import (
    Blob,
    Checkpoint,
    Job,
    JobLog,
    JobStatus,
    LineageEdge,
    ModelAlias,
    ModelVersion,
    Report,
    ReportFigure,
    Tag,
)
from tests.api.conftest import client_for, finished_job_with_output, make_settings
from worker.reconciler import retention_once
from worker.runner import run_job

SYNTHETIC = {"arch": {"input_dim": 8, "hidden_sizes": [16], "output_dim": 4}}


@pytest.fixture
def settings(sqlite_and_postgres_settings):
    """Every test here runs on SQLite and on PostgreSQL."""
    return sqlite_and_postgres_settings


def rows(settings, model, *columns):
    with Session(get_engine(settings)) as session:
        return set(session.exec(select(*columns) if len(columns) > 1 else select(columns[0])).all())


def blob_count(settings) -> int:
    return len(rows(settings, Blob, Blob.sha256))


def family(settings, root_id):
    """root -> student (distill) -> int8 (ptq); returns the job and checkpoint ids of student and int8."""
    student_job, student = finished_job_with_output(settings, {"teacher": root_id}, seed=11)
    int8_job, int8 = finished_job_with_output(settings, {"source": student}, seed=12, kind="ptq")
    return student_job, student, int8_job, int8


def test_a_checkpoint_with_descendants_or_versions_is_409_naming_them(client, settings, parent_id):
    _, student, _, int8 = family(settings, parent_id)
    held = client.delete(f"/checkpoints/{student}")
    assert held.status_code == 409
    assert "1 descendants" in held.json()["detail"] and int8 in held.json()["detail"]
    client.post("/models", json={"name": "small"})
    client.post("/models/small/versions", json={"checkpoint_id": int8})
    registered = client.delete(f"/checkpoints/{int8}")
    assert registered.status_code == 409 and "version 1 of model 'small'" in registered.json()["detail"]
    assert client.get(f"/checkpoints/{int8}").status_code == 200
    assert client.delete("/checkpoints/ckpt_00000000000000000000").status_code == 404


def test_cascade_removes_exactly_the_descendants_versions_aliases_and_their_bytes(client, settings, parent_id):
    _, student, _, int8 = family(settings, parent_id)
    unrelated = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 99}).json()["id"]
    client.post("/models", json={"name": "small"})
    client.post("/models/small/versions", json={"checkpoint_id": unrelated})
    client.post("/models/small/versions", json={"checkpoint_id": int8})
    client.put("/models/small/aliases/production", json={"version": 2})
    client.put("/models/small/aliases/fallback", json={"version": 1})
    blobs_before = blob_count(settings)

    response = client.delete(f"/checkpoints/{student}", params={"cascade": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (sorted(body["checkpoints"]), body["model_versions"], body["artifacts_removed"]) == (
        sorted([student, int8]),
        ["small@2"],
        2,
    )
    assert blob_count(settings) == blobs_before - 2
    assert rows(settings, Checkpoint, Checkpoint.id) == {parent_id, unrelated}
    assert rows(settings, LineageEdge, LineageEdge.id) == set()
    assert rows(settings, ModelVersion, ModelVersion.model_name, ModelVersion.version) == {("small", 1)}
    assert rows(settings, ModelAlias, ModelAlias.alias, ModelAlias.version) == {("fallback", 1)}
    assert client.get(f"/checkpoints/{int8}").status_code == 404
    assert client.get("/models/small/aliases/production").status_code == 404


def test_bytes_shared_with_another_checkpoint_stay(client, settings):
    first = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 5, "name": "a"}).json()
    second = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 5, "name": "b"}).json()
    assert first["sha256"] == second["sha256"]
    assert client.delete(f"/checkpoints/{first['id']}").json()["artifacts_removed"] == 0
    assert client.get(f"/checkpoints/{second['id']}/file").content[:8]  # still readable
    assert client.delete(f"/checkpoints/{second['id']}").json()["artifacts_removed"] == 1
    assert blob_count(settings) == 0


def test_an_input_of_an_unfinished_job_is_409_even_with_cascade(client, settings, parent_id):
    _, student, _, _ = family(settings, parent_id)
    job = client.post("/jobs/ptq", json={"checkpoint_id": student}).json()  # no worker here: it stays queued
    for cascade in ("false", "true"):
        response = client.delete(f"/checkpoints/{student}", params={"cascade": cascade})
        assert response.status_code == 409 and job["id"] in response.json()["detail"]
        assert "queued" in response.json()["detail"]
    through_root = client.delete(f"/checkpoints/{parent_id}", params={"cascade": "true"})
    assert through_root.status_code == 409 and student in through_root.json()["detail"]


def test_a_job_is_deleted_only_when_finished(client, settings, parent_id):
    queued = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
    response = client.delete(f"/jobs/{queued['id']}")
    assert response.status_code == 409 and "queued" in response.json()["detail"]
    parent_job, _ = finished_job_with_output(settings, {"teacher": parent_id}, seed=3, kind="search")
    with Session(get_engine(settings)) as session:
        session.add(Job(id="job_" + "a" * 20, kind="search-trial", params={}, status=JobStatus.running,
                        parent_job_id=parent_job))  # fmt: skip
        session.commit()
    running_child = client.delete(f"/jobs/{parent_job}")
    assert running_child.status_code == 409 and "job_aaaa" in running_child.json()["detail"]
    assert client.delete("/jobs/job_00000000000000000000").status_code == 404


def test_deleting_a_job_keeps_its_outputs_unless_cascade(client, settings, parent_id):
    search_job, search_output = finished_job_with_output(settings, {"teacher": parent_id}, seed=3, kind="search")
    trial_job, trial_output = finished_job_with_output(
        settings, {"parent_a": parent_id}, seed=4, kind="search-trial", parent_job_id=search_job
    )
    with Session(get_engine(settings)) as session:
        for job_id in (search_job, trial_job):
            session.add(Report(job_id=job_id, kind="search", schema_version="2.0", passed=True, body={}))
        session.commit()
    response = client.delete(f"/jobs/{search_job}")
    assert response.status_code == 200, response.text
    assert (sorted(response.json()["jobs"]), response.json()["checkpoints"]) == (sorted([search_job, trial_job]), [])
    assert rows(settings, Job, Job.id) == set() and rows(settings, Report, Report.id) == set()
    kept = client.get(f"/checkpoints/{trial_output}").json()
    assert kept["created_by_job"] is None
    assert rows(settings, LineageEdge, LineageEdge.child_id, LineageEdge.job_id) == {
        (search_output, None),
        (trial_output, None),
    }

    job_id, output = finished_job_with_output(settings, {"teacher": parent_id}, seed=5)
    blobs_before = blob_count(settings)
    cascaded = client.delete(f"/jobs/{job_id}", params={"cascade": "true"}).json()
    assert (cascaded["jobs"], cascaded["checkpoints"], cascaded["artifacts_removed"]) == ([job_id], [output], 1)
    assert blob_count(settings) == blobs_before - 1
    assert client.get(f"/checkpoints/{output}").status_code == 404


def test_retention_removes_old_unprotected_work_only(client, settings, parent_id):
    old_job, old_output = finished_job_with_output(settings, {"teacher": parent_id}, seed=1, finished_days_ago=40)
    # A chain of old work: the newer job is made from the older one's output; both go in one pass.
    chain_first, chain_first_output = finished_job_with_output(
        settings, {"teacher": parent_id}, seed=2, finished_days_ago=50
    )
    chain_second, chain_second_output = finished_job_with_output(
        settings, {"source": chain_first_output}, seed=3, kind="ptq", finished_days_ago=45
    )
    registered_job, registered_output = finished_job_with_output(
        settings, {"teacher": parent_id}, seed=4, finished_days_ago=40
    )
    # Old, but a recent job was made from its output: it stays.
    needed_job, needed_output = finished_job_with_output(settings, {"teacher": parent_id}, seed=5, finished_days_ago=40)
    recent_job, _ = finished_job_with_output(settings, {"source": needed_output}, seed=6, kind="ptq")
    client.post("/models", json={"name": "keep"})
    client.post("/models/keep/versions", json={"checkpoint_id": registered_output})

    dry = client.post("/admin/retention", params={"dry_run": "true", "older_than_days": 30})
    assert dry.status_code == 200, dry.text
    expected_jobs = [old_job, chain_second, chain_first]  # newest first
    assert dry.json()["jobs"] == expected_jobs and dry.json()["dry_run"] is True
    assert sorted(dry.json()["checkpoints"]) == sorted([old_output, chain_first_output, chain_second_output])
    kept = {item["job_id"]: item["reason"] for item in dry.json()["kept"]}
    assert kept[registered_job] == f"{registered_output} is registered as a model version"
    assert "made from its outputs" in kept[needed_job] and recent_job not in kept
    assert len(rows(settings, Job, Job.id)) == 6  # the dry run removed nothing

    blobs_before = blob_count(settings)
    applied = client.post("/admin/retention", params={"older_than_days": 30}).json()
    assert (applied["jobs"], applied["artifacts_removed"], applied["more"]) == (expected_jobs, 3, False)
    assert rows(settings, Job, Job.id) == {registered_job, needed_job, recent_job}
    assert blob_count(settings) == blobs_before - 3
    assert client.get(f"/checkpoints/{registered_output}").status_code == 200


def test_retention_keeps_tagged_work(client, settings, parent_id):
    tagged_job, _ = finished_job_with_output(settings, {"teacher": parent_id}, seed=1, finished_days_ago=40)
    tagged_output_job, tagged_output = finished_job_with_output(
        settings, {"teacher": parent_id}, seed=2, finished_days_ago=40
    )
    untagged_job, _ = finished_job_with_output(settings, {"teacher": parent_id}, seed=3, finished_days_ago=40)
    assert client.patch(f"/jobs/{tagged_job}", json={"tags": ["baseline"]}).status_code == 200
    assert client.patch(f"/checkpoints/{tagged_output}", json={"tags": ["keep"]}).status_code == 200

    applied = client.post("/admin/retention", params={"older_than_days": 30}).json()
    assert applied["jobs"] == [untagged_job]
    kept = {item["job_id"]: item["reason"] for item in applied["kept"]}
    assert kept == {tagged_job: f"{tagged_job} is tagged", tagged_output_job: f"{tagged_output} is tagged"}
    assert rows(settings, Job, Job.id) == {tagged_job, tagged_output_job}


def test_retention_needs_a_cutoff(client, tmp_path, parent_id):
    off = client.post("/admin/retention")
    assert off.status_code == 422 and "RECOMB_RETENTION_DAYS" in off.json()["detail"]
    assert client.post("/admin/retention", params={"older_than_days": 0}).status_code == 422


def test_workers_apply_the_retention_setting(tmp_path, parent_id, client, settings):
    old_job, _ = finished_job_with_output(settings, {"teacher": parent_id}, seed=1, finished_days_ago=10)
    recent_job, _ = finished_job_with_output(settings, {"teacher": parent_id}, seed=2, finished_days_ago=3)
    result = retention_once(settings.model_copy(update={"retention_days": 7}))
    assert result.jobs == [old_job] and rows(settings, Job, Job.id) == {recent_job}
    with client_for(settings.model_copy(update={"retention_days": 7})) as configured:
        assert configured.post("/admin/retention", params={"dry_run": "true"}).json()["jobs"] == []


def test_the_directory_store_sweep_removes_old_unreferenced_files(tmp_path):
    settings = make_settings(tmp_path, artifact_store="dir")
    with client_for(settings) as client:
        kept = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 1}).json()
        dropped = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 2}).json()
        fresh = client.post("/checkpoints/synthetic", json=SYNTHETIC | {"seed": 3}).json()
        assert client.delete(f"/checkpoints/{dropped['id']}").json()["artifacts_removed"] == 0  # files: swept later
        assert client.delete(f"/checkpoints/{fresh['id']}").status_code == 200
    root = settings.resolved_artifact_dir
    old = time.time() - SWEEP_GRACE_S - 60
    for checkpoint in (kept, dropped):
        os.utime(root / checkpoint["sha256"][:2] / checkpoint["sha256"], (old, old))
    with Session(get_engine(settings)) as session:
        assert get_store(settings).sweep(session) == 1
    remaining = {path.name for path in root.glob("??/*")}
    assert remaining == {kept["sha256"], fresh["sha256"]}  # the fresh file is too young to sweep
    with Session(get_engine(settings)) as session:
        assert set(session.exec(select(Checkpoint.id).where(col(Checkpoint.id) == kept["id"])).all()) == {kept["id"]}


def test_a_real_job_goes_with_its_report_figures_tags_and_log_lines(client, settings, parent_id, caplog):
    caplog.set_level(logging.INFO)  # as `recomb worker` configures it, so the job keeps log lines
    job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id, "tags": ["to-drop"]}).json()
    assert run_job(job["id"], worker.tasks.HANDLERS["ptq"], settings) == "succeeded"
    finished = client.get(f"/jobs/{job['id']}").json()
    output = finished["output_checkpoint_ids"][0]
    assert client.patch(f"/checkpoints/{output}", json={"tags": ["output-tag"]}).status_code == 200
    with Session(get_engine(settings)) as session:
        assert session.exec(select(ReportFigure).where(col(ReportFigure.report_id) == finished["report_id"])).first()
        assert session.exec(select(JobLog).where(col(JobLog.job_id) == job["id"])).first()

    deleted = client.delete(f"/jobs/{job['id']}", params={"cascade": "true"})
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["jobs"], deleted.json()["checkpoints"]) == ([job["id"]], [output])
    with Session(get_engine(settings)) as session:
        assert (
            session.exec(select(ReportFigure).where(col(ReportFigure.report_id) == finished["report_id"])).all() == []
        )
        assert session.exec(select(JobLog).where(col(JobLog.job_id) == job["id"])).all() == []
        assert session.exec(select(Tag).where(col(Tag.resource_id).in_([job["id"], output]))).all() == []
    assert client.get(f"/reports/{finished['report_id']}").status_code == 404
