import io

import numpy as np

from app.service.queue import make_celery, queue_depth


def submit(client, kind="ptq", **body):
    return client.post(f"/jobs/{kind}", json=body)


def test_ptq_job_is_queued_with_its_defaults_recorded_and_published(client, settings, parent_id):
    response = submit(client, checkpoint_id=parent_id)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["kind"] == "ptq"
    assert job["params"] == {
        "checkpoint_id": parent_id,
        "states": {"synthetic": {"n_states": 5000, "seed": 42}},
        "eval_states": {"synthetic": {"n_states": 1000, "seed": 7919}},
        "mode": "dynamic",
        "granularity": "per_tensor",
        "calibration_batches": 10,
        "calibration_batch_size": 64,
    }
    assert queue_depth(make_celery(settings)) == 1
    assert client.get(f"/jobs/{job['id']}").json()["id"] == job["id"]


def test_unknown_checkpoint_is_404_and_int8_input_is_422(client, int8_id):
    missing = submit(client, checkpoint_id="ckpt_00000000000000000000")
    assert missing.status_code == 404 and "ckpt_00000000000000000000" in missing.json()["detail"]
    wrong = submit(client, checkpoint_id=int8_id)
    assert wrong.status_code == 422 and "float32" in wrong.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_malformed_bodies_name_the_field(client, parent_id):
    missing = submit(client)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "checkpoint_id"]
    extra = submit(client, checkpoint_id=parent_id, epochz=3)
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "epochz"]
    bad_mode = submit(client, checkpoint_id=parent_id, mode="fast")
    assert bad_mode.status_code == 422 and bad_mode.json()["detail"][0]["loc"] == ["body", "mode"]
    bad_calibration = submit(client, checkpoint_id=parent_id, calibration_batches=0)
    assert bad_calibration.status_code == 422 and "calibration_batches" in str(bad_calibration.json()["detail"])
    both_states = submit(client, checkpoint_id=parent_id, states={"id": "st_x", "synthetic": {"seed": 1}})
    assert both_states.status_code == 422


def test_states_must_exist_and_fit_the_network(client, parent_id):
    assert submit(client, checkpoint_id=parent_id, states={"id": "st_00000000000000000000"}).status_code == 404
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5, 6), dtype=np.float32))
    states_id = client.post("/states", files={"file": ("s.npy", buffer.getvalue())}).json()["id"]
    response = submit(client, checkpoint_id=parent_id, states={"id": states_id})
    assert response.status_code == 422 and "width 6" in response.json()["detail"]


def test_unknown_kind_lists_the_valid_ones(client):
    response = client.post("/jobs/teleport", json={})
    assert response.status_code == 404 and "ptq" in response.json()["detail"]


def test_cancel_a_queued_job_then_conflict(client, parent_id):
    job_id = submit(client, checkpoint_id=parent_id).json()["id"]
    cancelled = client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 409
    assert client.post("/jobs/job_00000000000000000000/cancel").status_code == 404


def test_idempotency_key_returns_the_first_job(client, settings, parent_id):
    headers = {"Idempotency-Key": "retry-me"}
    first = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}, headers=headers).json()
    again = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}, headers=headers).json()
    assert first["id"] == again["id"]
    assert client.get("/jobs").json()["total"] == 1
    assert queue_depth(make_celery(settings)) == 1


def test_job_list_filters(client, parent_id):
    job_id = submit(client, checkpoint_id=parent_id).json()["id"]
    assert [job["id"] for job in client.get("/jobs", params={"kind": "ptq", "status": "queued"}).json()["items"]] == [
        job_id
    ]
    assert client.get("/jobs", params={"status": "succeeded"}).json()["total"] == 0
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_parents_of_different_architectures_are_422_naming_both(client, parent_id):
    small = client.post("/checkpoints/synthetic", json={"arch": {"hidden_size": 32}, "seed": 0}).json()["id"]
    response = submit(client, "crossover", parent_a_id=parent_id, parent_b_id=small)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "architectures differ: parent_a_id is 8-64-64-4 layernorm relu but parent_b_id is 8-32-32-4 layernorm relu (hidden_sizes [64, 64] vs [32, 32])"
    )
    tanh = client.post("/checkpoints/synthetic", json={"arch": {"activation": "tanh"}, "seed": 0}).json()["id"]
    response = submit(client, "crossover", parent_a_id=parent_id, parent_b_id=tanh)
    assert response.status_code == 422 and "(activation relu vs tanh)" in response.json()["detail"]


def test_finetune_reference_defaults_to_parent_a_and_is_required_without_one(client, parent_id):
    missing = submit(client, "finetune", checkpoint_id=parent_id)
    assert missing.status_code == 422 and "no parent_a" in missing.json()["detail"]


def test_qat_refuses_an_int8_student_and_unknown_regimes_list_the_names(client, parent_id, int8_id):
    response = submit(client, "qat", checkpoint_id=int8_id, teacher_id=parent_id)
    assert response.status_code == 422 and "float32" in response.json()["detail"]
    regime = submit(client, "finetune", checkpoint_id=parent_id, regime="huge")
    assert regime.status_code == 422 and "medium" in str(regime.json()["detail"])
