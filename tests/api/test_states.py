import io

import numpy as np
import pytest


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_upload_states_records_shape_and_hash(client):
    response = client.post("/states", files={"file": ("s.npy", npy(np.ones((10, 8), dtype=np.float64)))})
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["n"], record["dim"]) == (10, 8)
    assert client.get(f"/states/{record['id']}").json()["sha256"] == record["sha256"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[np.nan] * 8], dtype=np.float32), "finite"),
        (np.ones(8, dtype=np.float32), "2-D"),
        (np.array([{"x": 1}], dtype=object), "object arrays"),
    ],
)
def test_bad_state_buffers_are_422_and_not_stored(client, array, message):
    response = client.post("/states", files={"file": ("bad.npy", npy(array))})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert client.get("/states").json()["total"] == 0


def test_corrupt_npy_is_422(client):
    data = npy(np.ones((10, 8), dtype=np.float32))
    assert client.post("/states", files={"file": ("cut.npy", data[:100])}).status_code == 422


def test_states_may_carry_the_recorded_actions_as_npz_or_beside(client):
    states = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    actions = np.random.default_rng(1).integers(0, 4, 50)
    archive = io.BytesIO()
    np.savez(archive, states=states, actions=actions)
    packed = client.post("/states", files={"file": ("episodes.npz", archive.getvalue())})
    assert packed.status_code == 201, packed.text
    assert packed.json()["has_actions"] and packed.json()["n"] == 50
    beside = client.post(
        "/states", files={"file": ("states.npy", npy(states)), "actions": ("actions.npy", npy(actions))}
    )
    assert beside.status_code == 201 and beside.json()["has_actions"]
    plain = client.post("/states", files={"file": ("states.npy", npy(states))})
    assert not plain.json()["has_actions"]


def test_recorded_actions_that_do_not_fit_are_422(client, parent_id):
    states = np.zeros((10, 8), dtype=np.float32)
    short = client.post(
        "/states", files={"file": ("s.npy", npy(states)), "actions": ("a.npy", npy(np.zeros(9, dtype=np.int64)))}
    )
    assert short.status_code == 422 and "shape (10,)" in short.json()["detail"]
    floats = client.post("/states", files={"file": ("s.npy", npy(states)), "actions": ("a.npy", npy(np.zeros(10)))})
    assert floats.status_code == 422 and "integer" in floats.json()["detail"]
    archive = io.BytesIO()
    np.savez(archive, states=states, rewards=np.zeros(10))
    extra = client.post("/states", files={"file": ("e.npz", archive.getvalue())})
    assert extra.status_code == 422 and "rewards" in extra.json()["detail"]
    wide = client.post(
        "/states", files={"file": ("s.npy", npy(states)), "actions": ("a.npy", npy(np.full(10, 7)))}
    ).json()["id"]
    job = client.post(
        "/jobs/validate-distillation", json={"student_id": parent_id, "teacher_id": parent_id, "states": {"id": wide}}
    )
    assert job.status_code == 422 and "record action 7 but student_id has 4 actions" in job.json()["detail"]
