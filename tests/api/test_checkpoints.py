import hashlib
import io
import pickle

import torch
from safetensors.torch import load as safetensors_load

from core.networks import QNetwork, QNetworkArch
from tests.api.conftest import client_for, make_settings, state_dict_bytes


def count(client, resource: str = "/checkpoints") -> int:
    return client.get(resource).json()["total"]


def test_synthetic_parents_are_bit_identical_per_seed(client):
    body = {"arch": {"input_dim": 8, "hidden_size": 64, "output_dim": 4}, "seed": 7}
    first, second = (
        client.post("/checkpoints/synthetic", json=body).json(),
        client.post("/checkpoints/synthetic", json=body).json(),
    )
    other = client.post("/checkpoints/synthetic", json=body | {"seed": 8}).json()
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"] != other["sha256"]
    assert first["param_bytes"] == 21008 and first["format"] == "float32"


def test_synthetic_arch_errors_name_the_field(client):
    response = client.post("/checkpoints/synthetic", json={"arch": {"hidden_size": 0}, "seed": 1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "arch", "hidden_size"]


def test_reference_state_dict_uploads_with_inferred_arch_and_downloads_as_safetensors(client):
    data = state_dict_bytes(QNetworkArch(hidden_size=32))
    response = client.post("/checkpoints", files={"file": ("student_A.pt", data)}, data={"name": "student A"})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["arch"] == {
        "input_dim": 8,
        "hidden_sizes": [32, 32],
        "output_dim": 4,
        "norm": "layernorm",
        "activation": "relu",
        "dropout_rate": 0.1,
    }
    assert record["source_format"] == "reference"
    assert record["name"] == "student A"
    download = client.get(f"/checkpoints/{record['id']}/file")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == record["sha256"]
    assert safetensors_load(download.content)["network.4.weight"].shape == (32, 32)


def test_declared_arch_must_match_the_tensors(client):
    response = client.post(
        "/checkpoints", files={"file": ("a.pt", state_dict_bytes())}, data={"arch": '{"hidden_size": 32}'}
    )
    assert response.status_code == 422
    assert "does not match" in response.json()["detail"]


def test_pickled_module_is_refused_and_nothing_is_stored(client):
    buffer = io.BytesIO()
    torch.save(QNetwork(QNetworkArch()), buffer)
    response = client.post("/checkpoints", files={"file": ("model.pt", buffer.getvalue())})
    assert response.status_code == 422
    assert "state_dict" in response.json()["detail"]
    assert count(client) == 0


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_and_never_runs(client, tmp_path):
    marker = tmp_path / "pwned"
    response = client.post("/checkpoints", files={"file": ("evil.pt", pickle.dumps(_Exploit(str(marker)), protocol=2))})
    assert response.status_code == 422
    buffer = io.BytesIO()
    torch.save({"network.0.weight": _Exploit(str(marker))}, buffer)
    response = client.post("/checkpoints", files={"file": ("evil.pt", buffer.getvalue())})
    assert response.status_code == 422
    assert not marker.exists()
    assert count(client) == 0


def test_wrong_type_corrupt_and_empty_uploads(client, parent_id):
    assert client.post("/checkpoints", files={"file": ("notes.txt", b"just some text")}).status_code == 415
    good = client.get(f"/checkpoints/{parent_id}/file").content
    truncated = client.post("/checkpoints", files={"file": ("cut.safetensors", good[: len(good) // 2])})
    assert truncated.status_code == 422 and "safetensors" in truncated.json()["detail"]
    assert client.post("/checkpoints", files={"file": ("empty.pt", b"")}).status_code == 422
    assert count(client) == 1


def test_oversize_upload_is_413_and_leaves_nothing(tmp_path):
    with client_for(make_settings(tmp_path, max_upload_bytes=4096)) as client:
        response = client.post("/checkpoints", files={"file": ("big.pt", state_dict_bytes())})
        assert response.status_code == 413
        assert "RECOMB_MAX_UPLOAD_BYTES" in response.json()["detail"]
        assert count(client) == 0


def test_unknown_and_malformed_ids_are_404(client):
    for path in (
        "/checkpoints/ckpt_00000000000000000000",
        "/checkpoints/..%2F..%2Fetc%2Fpasswd",
        "/checkpoints/ckpt_%00/file",
        "/checkpoints/nope/lineage",
    ):
        assert client.get(path).status_code == 404, path


def test_lineage_of_an_upload_is_itself(client, parent_id):
    lineage = client.get(f"/checkpoints/{parent_id}/lineage").json()
    assert lineage["root"] == parent_id
    assert [node["id"] for node in lineage["nodes"]] == [parent_id]
    assert lineage["edges"] == []


def test_list_filters_by_format(client, parent_id, int8_id):
    assert [item["id"] for item in client.get("/checkpoints", params={"format": "int8"}).json()["items"]] == [int8_id]
    assert client.get("/checkpoints", params={"limit": 1}).json()["total"] == 2


def test_idempotent_upload_returns_the_first_record(client):
    headers = {"Idempotency-Key": "upload-1"}
    first = client.post("/checkpoints", files={"file": ("a.pt", state_dict_bytes())}, headers=headers)
    again = client.post("/checkpoints", files={"file": ("a.pt", state_dict_bytes())}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert count(client) == 1
