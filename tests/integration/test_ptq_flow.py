"""The PTQ job end to end on each stack, over HTTP, with real workers."""

import hashlib
import io
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load as safetensors_load

from app.service.queue import make_celery, publish
from core.networks import QNetwork, QNetworkArch

pytestmark = pytest.mark.integration


def synthetic_parent(stack, seed=0, hidden=64) -> dict:
    response = stack.client.post(
        "/checkpoints/synthetic", json={"arch": {"input_dim": 8, "hidden_size": hidden, "output_dim": 4}, "seed": seed}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_walkthrough_ptq_report_lineage_and_download(stack):
    parent = synthetic_parent(stack)
    queued = stack.client.post("/jobs/ptq", json={"checkpoint_id": parent["id"], "mode": "dynamic"})
    assert queued.status_code == 202, queued.text
    job = stack.wait_job(queued.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0 and job["attempts"] == 1

    report = stack.client.get(f"/reports/{job['report_id']}").json()
    assert report["passed"] is True and report["schema_version"] == "2.0" and report["kind"] == "ptq"
    validation = report["body"]
    assert validation["held_out"]["action_agreement"] >= 0.98
    assert validation["states"]["count"] == 1000
    assert job["params"]["eval_states"] == {"synthetic": {"n_states": 1000, "seed": 7919}}
    assert validation["size"]["param_compression_ratio"] > 3.2
    assert validation["size"]["file_compression_ratio"] >= 2.8

    (int8_id,) = job["output_checkpoint_ids"]
    int8 = stack.client.get(f"/checkpoints/{int8_id}").json()
    assert int8["format"] == "int8" and int8["created_by_job"] == job["id"]
    lineage = stack.client.get(f"/checkpoints/{int8_id}/lineage").json()
    assert lineage["edges"] == [{"parent": parent["id"], "child": int8_id, "role": "source", "job_id": job["id"]}]

    data = stack.client.get(f"/checkpoints/{int8_id}/file").content
    assert hashlib.sha256(data).hexdigest() == int8["sha256"]
    tensors = safetensors_load(data)
    assert {tensors[f"network.{i}.weight"].dtype for i in (0, 4, 8)} == {torch.int8}
    assert tensors["network.1.weight"].dtype == torch.float32


def test_uploaded_reference_network_with_uploaded_states(stack):
    buffer = io.BytesIO()
    torch.save(QNetwork(QNetworkArch(hidden_size=32)).state_dict(), buffer)
    student = stack.client.post("/checkpoints", files={"file": ("student_A.pt", buffer.getvalue())}).json()
    states = io.BytesIO()
    np.save(states, np.random.default_rng(3).standard_normal((257, 8)).astype(np.float32))
    states_id = stack.client.post("/states", files={"file": ("states.npy", states.getvalue())}).json()["id"]
    job_id = stack.client.post(
        "/jobs/ptq",
        json={
            "checkpoint_id": student["id"],
            "mode": "static",
            "states": {"id": states_id},
            "granularity": "per_channel",
        },
    ).json()["id"]
    job = stack.wait_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    body = stack.client.get(f"/reports/{job['report_id']}").json()["body"]
    assert body["quantization"]["calibration_samples"] == 257
    assert body["quantization"]["granularity"] == "per_channel" and body["quantization"]["mode"] == "static"


def test_concurrent_jobs_each_write_their_outputs_once(stack):
    parent = synthetic_parent(stack, seed=5)
    job_ids = [stack.client.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}).json()["id"] for _ in range(12)]
    jobs = [stack.wait_job(job_id) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 12
    assert all(len(job["output_checkpoint_ids"]) == 1 for job in jobs)
    shas = {stack.client.get(f"/checkpoints/{job['output_checkpoint_ids'][0]}").json()["sha256"] for job in jobs}
    assert len(shas) == 1  # same input, same bytes


def test_redelivered_message_writes_nothing_twice(stack):
    parent = synthetic_parent(stack, seed=6)
    job = stack.wait_job(stack.client.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}).json()["id"])
    publish(job["id"], "ptq", make_celery(stack.settings))
    time.sleep(1.5)
    again = stack.client.get(f"/jobs/{job['id']}").json()
    assert again["attempts"] == 1 and again["output_checkpoint_ids"] == job["output_checkpoint_ids"]
    assert stack.client.get("/reports", params={"job_id": job["id"]}).json()["total"] == 1
    assert stack.client.get("/checkpoints", params={"created_by_job": job["id"]}).json()["total"] == 1
