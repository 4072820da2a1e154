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
