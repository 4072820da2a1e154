"""Hostile input and access control over HTTP, on the Redis + PostgreSQL stack with the `dir` artifact store.

The stack runs with two API keys, a 256 KiB upload limit and artifacts as
files, so every test can check what reached the disk: a refused upload, a
pickle that would run code, a file name or id that tries to leave the
artifact directory. ``recomb up`` without keys is checked to listen on
loopback only.
"""

from __future__ import annotations

import io
import pickle
import threading
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from core.networks import QNetwork, QNetworkArch
from tests.integration.faults import listening_addresses
from tests.integration.stack import RecombUp, postgres_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

API_KEYS = (f"key-{uuid.uuid4().hex}", f"key-{uuid.uuid4().hex}")
MAX_UPLOAD_BYTES = 256 * 1024
OPEN_PATHS = {"/healthz", "/readyz"}
PLACEHOLDER_IDS = {
    "checkpoint_id": "ckpt_00000000000000000000",
    "states_id": "st_00000000000000000000",
    "job_id": "job_00000000000000000000",
    "report_id": "rep_00000000000000000000",
    "webhook_id": "wh_00000000000000000000",
    "name": "no-such-model",
    "alias": "no-such-alias",
}


def state_dict_bytes(arch: QNetworkArch = QNetworkArch()) -> bytes:
    buffer = io.BytesIO()
    torch.save(QNetwork(arch).state_dict(), buffer)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def totals(client: httpx.Client) -> dict[str, int]:
    return {resource: client.get(resource).json()["total"] for resource in ("/checkpoints", "/states", "/jobs")}


def files_under(root: Path, skip_suffix: str = ".log") -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (but logs, which grow on their own), with size and modification time."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file() and not path.name.endswith(skip_suffix)
    }


@pytest.fixture(scope="module")
def guarded_stack(postgres_and_redis, tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded-stack")
    stack, drop_database = postgres_stack(root)
    stack.env |= {
        "RECOMB_API_KEYS": ",".join(API_KEYS),
        "RECOMB_ARTIFACT_STORE": "dir",
        "RECOMB_ARTIFACT_DIR": str(root / "var" / "artifacts"),
        "RECOMB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    }
    try:
        stack.start(workers=1)
        stack.client.headers.update(bearer(API_KEYS[0]))
        yield stack
    finally:
        stack.stop()
        drop_database()


@pytest.fixture
def artifact_dir(guarded_stack) -> Path:
    return Path(guarded_stack.env["RECOMB_ARTIFACT_DIR"])


def every_operation(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, concrete path) for every operation in the OpenAPI document, ids filled with well-formed unknowns."""
    operations = []
    for template, methods in client.get("/openapi.json").json()["paths"].items():
        path = template.format(**PLACEHOLDER_IDS, kind="ptq")
        operations.extend((method.upper(), path) for method in methods)
    return operations


def test_every_resource_needs_a_valid_key_and_health_checks_do_not(guarded_stack):
    operations = every_operation(guarded_stack.client)
    guarded = [(method, path) for method, path in operations if path not in OPEN_PATHS]
    assert len(guarded) >= 20 and {path for _, path in operations} >= OPEN_PATHS
    near_miss = API_KEYS[0][:-1] + ("0" if API_KEYS[0][-1] != "0" else "1")
    refused_credentials = [
        {},
        bearer(near_miss),
        bearer(API_KEYS[0] + "x"),
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {API_KEYS[0]}"},
        {"X-API-Key": API_KEYS[0]},
    ]
    with httpx.Client(base_url=guarded_stack.url, timeout=30.0) as anonymous:
        for method, path in guarded:
            for headers in refused_credentials:
                response = anonymous.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json() == {"detail": "missing or invalid API key"}
            # Either key is accepted: the resource answers for itself (a body that is not an object
            # is refused after the key check, so nothing is created, not even a job with all defaults).
            for key in API_KEYS:
                assert anonymous.request(method, path, headers=bearer(key), json=[]).status_code != 401, (method, path)
        for path in OPEN_PATHS:
            assert anonymous.get(path).status_code == 200


def test_api_keys_never_reach_the_logs(guarded_stack):
    client = guarded_stack.client
    parent = client.post("/checkpoints/synthetic", json={"seed": 301}).json()["id"]
    job = guarded_stack.wait_job(client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"])
    assert job["status"] == "succeeded", job["error"]
    # Requests that fail, carrying a key, in every place a careless log line might print it.
    for key in API_KEYS:
        client.get("/checkpoints/nope", headers=bearer(key))
        client.post("/jobs/ptq", json={"checkpoint_id": key}, headers=bearer(key))
        client.get(f"/jobs/{key}", headers=bearer(key))
    client.get("/jobs", headers=bearer(API_KEYS[0] + "-wrong"))
    logs = {path.name: path.read_text(errors="replace") for path in guarded_stack.root.glob("*.log")}
    assert {"api.log", "worker1.log"} <= set(logs)
    for key in API_KEYS:
        assert [name for name, text in logs.items() if key in text] == []


class RunsCodeWhenUnpickled:
    """A pickle payload that creates ``marker`` if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_pickle_that_would_run_code_is_refused_and_never_runs(guarded_stack, artifact_dir):
    client = guarded_stack.client
    marker = guarded_stack.root / f"pickle-ran-{uuid.uuid4().hex}"
    wrapped = io.BytesIO()
    torch.save({"network.0.weight": RunsCodeWhenUnpickled(marker)}, wrapped)
    payloads = {
        "raw-pickle.pt": pickle.dumps(RunsCodeWhenUnpickled(marker), protocol=2),
        "torch-save.pt": wrapped.getvalue(),
    }
    before, files_before = totals(client), files_under(artifact_dir)

    for filename, payload in payloads.items():
        response = client.post("/checkpoints", files={"file": (filename, payload)})
        assert response.status_code == 422, (filename, response.text)
        assert "state dict" in response.json()["detail"]

    assert not marker.exists()
    assert totals(client) == before
    assert files_under(artifact_dir) == files_before


def multipart_chunks(filename: str, payload: bytes, boundary: str, chunk_bytes: int = 64 * 1024):
    """A multipart body as a generator, so httpx sends it chunked, without a Content-Length."""
    yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode()
    for start in range(0, len(payload), chunk_bytes):
        yield payload[start : start + chunk_bytes]
    yield f"\r\n--{boundary}--\r\n".encode()


def test_oversized_truncated_and_corrupt_uploads_store_nothing(guarded_stack, artifact_dir):
    client = guarded_stack.client
    good_network = state_dict_bytes()
    safetensors_file = client.get(
        f"/checkpoints/{client.post('/checkpoints/synthetic', json={'seed': 302}).json()['id']}/file"
    ).content
    before, files_before = totals(client), files_under(artifact_dir)
    oversized = {
        "/checkpoints": state_dict_bytes(QNetworkArch(hidden_size=256)),
        "/states": npy_bytes(np.zeros((MAX_UPLOAD_BYTES // 32, 8), np.float32)),
    }

    for resource, payload in oversized.items():
        assert len(payload) > MAX_UPLOAD_BYTES
        declared = client.post(resource, files={"file": ("big.bin", payload)})
        assert declared.status_code == 413, declared.text
        assert declared.json()["detail"] == f"upload larger than RECOMB_MAX_UPLOAD_BYTES ({MAX_UPLOAD_BYTES} bytes)"
        boundary = uuid.uuid4().hex
        chunked = client.post(
            resource,
            content=multipart_chunks("big.bin", payload, boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert chunked.status_code == 413, chunked.text

    refused = {
        ("/checkpoints", "cut.safetensors", safetensors_file[: len(safetensors_file) // 2]): 422,
        ("/checkpoints", "cut.pt", good_network[: len(good_network) // 2]): 422,
        ("/checkpoints", "empty.pt", b""): 422,
        ("/checkpoints", "notes.txt", b"plain text, not a network"): 415,
        ("/states", "cut.npy", npy_bytes(np.zeros((100, 8), np.float32))[:200]): 422,
        ("/states", "objects.npy", npy_bytes(np.array([{"a": 1}], dtype=object))): 422,
        ("/states", "nan.npy", npy_bytes(np.full((4, 8), np.nan, np.float32))): 422,
    }
    for (resource, filename, payload), status_code in refused.items():
        response = client.post(resource, files={"file": (filename, payload)})
        assert response.status_code == status_code, (filename, response.text)
        assert isinstance(response.json()["detail"], str)

    assert totals(client) == before
    assert files_under(artifact_dir) == files_before


def test_path_tricks_in_names_and_ids_never_touch_files_outside_the_artifact_dir(guarded_stack, artifact_dir):
    client, root = guarded_stack.client, guarded_stack.root  # root holds the data dir, the logs and the processes' cwd
    token = uuid.uuid4().hex
    path_tricks = [
        f"../../escape-{token}.pt",
        f"/tmp/escape-{token}.pt",
        f"..\\..\\escape-{token}.pt",
        f"{artifact_dir}/../escape-{token}.pt",
    ]
    nul_trick = f"nul-{token}\x00.pt"
    files_before = files_under(root)

    for trick in path_tricks:
        checkpoint = client.post("/checkpoints", files={"file": (trick, state_dict_bytes())}, data={"name": trick})
        assert checkpoint.status_code == 201, (trick, checkpoint.text)
        assert checkpoint.json()["name"] == trick  # a name is text, never a path
        states = client.post("/states", files={"file": (trick, npy_bytes(np.zeros((4, 8), np.float32)))})
        assert states.status_code == 201 and states.json()["name"] == trick, (trick, states.text)
    boundary = uuid.uuid4().hex
    for resource, payload in (
        ("/checkpoints", state_dict_bytes()),
        ("/states", npy_bytes(np.zeros((4, 8), np.float32))),
    ):
        # httpx escapes a NUL in a file name, so that multipart body is written by hand to carry the raw byte.
        raw_name = client.post(
            resource,
            content=b"".join(multipart_chunks(nul_trick, payload, boundary)),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        form_name = client.post(resource, files={"file": ("ok.bin", payload)}, data={"name": nul_trick})
        for response in (raw_name, form_name):
            assert response.status_code == 422 and "NUL" in response.json()["detail"], response.text
    for path in (
        "/checkpoints/..%2F..%2Fetc%2Fpasswd",
        "/checkpoints/%2Fetc%2Fpasswd/file",
        "/checkpoints/ckpt_%00/file",
        "/states/..%2F..%2Fescape",
        "/reports/%2Ftmp",
        "/jobs/..%2F..%2Fescape",
    ):
        assert client.get(path).status_code == 404, path
    parent = client.post("/checkpoints/synthetic", json={"seed": 303}).json()["id"]
    for bad_id in (f"../../escape-{token}", "/etc/passwd", "ckpt_\u0000"):
        # Unknown (404), or too long to be an id (422): never looked up as a file.
        assert client.post("/jobs/ptq", json={"checkpoint_id": bad_id}).status_code in (404, 422), bad_id
        response = client.post("/jobs/ptq", json={"checkpoint_id": parent, "mode": "static", "states": {"id": bad_id}})
        assert response.status_code in (404, 422), response.text
    assert client.get("/checkpoints", params={"created_by_job": "../../x"}).json()["total"] == 0
    for resource, query in (
        ("/checkpoints", {"created_by_job": "\x00"}),
        ("/reports", {"job_id": "\x00"}),
        ("/jobs", {"kind": "\x00"}),
    ):
        assert client.get(resource, params=query).status_code == 422, query

    stored = {
        item["sha256"]
        for resource in ("/checkpoints", "/states")
        for item in client.get(resource, params={"limit": 500}).json()["items"]
    }
    artifacts = files_under(artifact_dir)
    assert {Path(name).name for name in artifacts} == stored
    assert all(name == f"{Path(name).name[:2]}/{Path(name).name}" for name in artifacts)
    artifacts_in_root = str(artifact_dir.relative_to(root))
    assert {
        name for name in files_under(root).keys() - files_before.keys() if not name.startswith(artifacts_in_root)
    } == set()
    assert list(Path("/tmp").glob(f"*{token}*")) == [] and list(root.parent.glob(f"*{token}*")) == []


def test_same_idempotency_key_from_concurrent_clients_creates_one_job_and_one_upload(guarded_stack):
    client = guarded_stack.client
    parent = client.post("/checkpoints/synthetic", json={"seed": 304}).json()["id"]
    before = totals(client)
    concurrent_clients = 8
    barrier = threading.Barrier(concurrent_clients)
    responses: dict[str, list[httpx.Response]] = {"job": [], "upload": []}
    lock = threading.Lock()
    job_key, upload_key = f"job-{uuid.uuid4().hex}", f"upload-{uuid.uuid4().hex}"
    network = state_dict_bytes()

    def race() -> None:
        with httpx.Client(base_url=guarded_stack.url, headers=bearer(API_KEYS[1]), timeout=30.0) as own_client:
            barrier.wait(timeout=30)
            job = own_client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers={"Idempotency-Key": job_key})
            barrier.wait(timeout=30)
            upload = own_client.post(
                "/checkpoints", files={"file": ("a.pt", network)}, headers={"Idempotency-Key": upload_key}
            )
        with lock:
            responses["job"].append(job)
            responses["upload"].append(upload)

    threads = [threading.Thread(target=race) for _ in range(concurrent_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [response.status_code for response in responses["job"]] == [202] * concurrent_clients
    assert [response.status_code for response in responses["upload"]] == [201] * concurrent_clients
    assert len({response.json()["id"] for response in responses["job"]}) == 1
    assert len({response.json()["id"] for response in responses["upload"]}) == 1
    job = guarded_stack.wait_job(responses["job"][0].json()["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 1
    # One job, and two checkpoints: the upload and the job's int8 output.
    assert totals(client) == {
        "/checkpoints": before["/checkpoints"] + 2,
        "/states": before["/states"],
        "/jobs": before["/jobs"] + 1,
    }


def test_recomb_up_without_keys_listens_on_loopback_only_and_says_so(guarded_stack, tmp_path):
    env = {name: value for name, value in guarded_stack.env.items() if name != "RECOMB_API_KEYS"}
    up = RecombUp(tmp_path, env, workers=0, host="0.0.0.0")
    try:
        up.start()
        assert listening_addresses(up.port) == {"127.0.0.1"}
        assert "RECOMB_API_KEYS is not set: binding to 127.0.0.1 only (set keys to listen on 0.0.0.0)" in up.log()
        assert httpx.get(f"{up.url}/checkpoints").status_code == 200  # open, as the log line says
    finally:
        up.stop()
