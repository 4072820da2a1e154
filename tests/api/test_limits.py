"""The door: what is refused before a body is read or parsed, work budgets, the queue bound, and hidden docs."""

from __future__ import annotations

import io
import json
import time
import zipfile

import anyio
import numpy as np
import pytest
import torch
from fastapi.routing import APIRoute
from sqlalchemy import update
from sqlmodel import Session

from app.api.admission import QUEUE_COUNTS_MAX_AGE_S
from app.api.middleware import SUBMIT_SLOT_WAIT_S, Slots, is_submission
from app.api.routes import checkpoints, dashboard, health, job_events, jobs, monitoring, reports, state_buffers
from app.main import create_app
from app.service.db import get_engine
from app.service.tables import IdempotencyRecord, utcnow
from core.networks import QNetwork, QNetworkArch
from tests.api.conftest import client_for, make_settings

KEYS = ("key-alpha", "key-beta")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chunks(payload: bytes, size: int = 64 * 1024):
    """A body as a generator: the client sends it chunked, with no Content-Length to refuse it by."""
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_json_bodies_over_the_limit_are_413_unparsed_and_unechoed(tmp_path):
    with client_for(make_settings(tmp_path, max_body_bytes=10_000)) as client:
        huge = json.dumps({"seed": 1, "name": "x" * 50_000}).encode()
        for body in (huge, chunks(huge, 4096)):
            response = client.post("/checkpoints/synthetic", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 413, response.text
            assert response.json() == {"detail": "request body larger than RECOMB_MAX_BODY_BYTES (10000 bytes)"}
        assert client.get("/checkpoints").json()["total"] == 0
        assert client.post("/checkpoints/synthetic", json={"seed": 1}).status_code == 201


def test_a_malformed_body_is_named_without_echoing_it(client, parent_id):
    name = "n" * 300_000
    response = client.post("/jobs/distill", json={"teacher_id": parent_id, "epochs": "many", "loss_fn": name})
    assert response.status_code == 422
    assert len(response.content) < 2_000
    assert {tuple(item["loc"]) for item in response.json()["detail"]} == {("body", "epochs"), ("body", "loss_fn")}
    assert (
        next(item for item in response.json()["detail"] if item["loc"] == ["body", "epochs"])["input"] == "many"
    )  # a short value is named


@pytest.mark.parametrize(
    ("path", "body"), [("/jobs/ptq", b'{"checkpoint_id": "x"}'), ("/states", b"--b\r\n" + b"z" * 1000)]
)
def test_without_a_key_the_body_is_never_read(tmp_path, path, body):
    """Called as ASGI with a ``receive`` that records every read: a refused request reads nothing."""
    app = create_app(make_settings(tmp_path, api_keys=",".join(KEYS)))
    reads, sent = [], []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode())],
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "http_version": "1.1",
    }
    anyio.run(app, scope, receive, send)
    assert reads == []
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"]) == {"detail": "missing or invalid API key"}


def test_docs_are_public_by_default_and_can_go_behind_the_key(tmp_path):
    with client_for(make_settings(tmp_path / "public", api_keys=",".join(KEYS))) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
    with client_for(make_settings(tmp_path / "hidden", api_keys=",".join(KEYS), public_docs=False)) as client:
        for path in ("/docs", "/openapi.json"):
            assert client.get(path).status_code == 401, path
        assert client.get("/openapi.json", headers=bearer(KEYS[0])).json()["info"]["title"] == "recomb"
        assert client.get("/healthz").status_code == 200 and client.get("/ui").status_code == 200
    with client_for(make_settings(tmp_path / "open", public_docs=False)) as client:  # no keys: nothing to hide behind
        assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("distill", {"epochs": 1e30}, "exceeded maximum size"),
        ("distill", {"epochs": 1e15}, "less than or equal to 100000"),
        (
            "distill",
            {"batch_size": 1, "states": {"synthetic": {"n_states": 1_000_000, "seed": 1}}},
            "RECOMB_MAX_JOB_CALLS raises it",
        ),
        (
            "validate-quantized",
            {"latency_repeats": 1_000_000_000},
            "less than or equal to 1000000",
        ),
        (
            "validate-distillation",
            {"rollout_episodes": 1_000_000_000},
            "less than or equal to 100000",
        ),
        (
            "validate-distillation",
            {"rollout_episodes": 100_000, "rollout_max_steps": 100_000},
            "RECOMB_MAX_JOB_MULTIPLY_ADDS raises it",
        ),
        (
            "search",
            {
                "preset": "custom",
                "alpha_values": [0.1, 0.5, 0.9],
                "crossover_seeds": list(range(40)),
                "finetune_regimes": ["long"],
                "n_states": 100_000,
            },
            "RECOMB_MAX_JOB_CALLS raises it",
        ),
        (
            "pipeline",
            {"overrides": {"distill": {"epochs": 100_000}}, "states": {"synthetic": {"n_states": 100_000, "seed": 1}}},
            "RECOMB_MAX_JOB_CALLS raises it",
        ),
    ],
)
def test_work_beyond_a_bound_or_budget_is_422_naming_it(client, parent_id, kind, body, message):
    refs = {
        "distill": {"teacher_id": parent_id},
        "validate-quantized": {"float_id": parent_id},
        "validate-distillation": {"teacher_id": parent_id, "student_id": parent_id},
        "search": {"parent_a_id": parent_id, "parent_b_id": parent_id},
        "pipeline": {},
    }[kind]
    if kind == "validate-quantized":
        refs["quant_id"] = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()[
            "id"
        ]  # any id: the bound is checked first
    response = client.post(f"/jobs/{kind}", json=refs | body)
    assert response.status_code == 422, response.text
    assert message in json.dumps(response.json()["detail"]), response.json()
    if isinstance(response.json()["detail"], list):  # a field's bound: the error names the field
        assert [item["loc"][-1] for item in response.json()["detail"]] == list(body)
    assert len(response.content) < 3_000


def test_budgets_are_settings(tmp_path):
    with client_for(make_settings(tmp_path, max_job_calls=500)) as client:
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        refused = client.post("/jobs/distill", json={"teacher_id": parent})
        assert refused.status_code == 422
        assert (
            "this distill job needs about 1.43e+03 network calls (distill: 10 epochs x 4500 training rows in batches of 32), over the budget of 500"
            in refused.json()["detail"]
        )
        assert client.post("/jobs/distill", json={"teacher_id": parent, "batch_size": 512}).status_code == 202


def test_state_buffers_are_bounded_in_values(tmp_path):
    with client_for(make_settings(tmp_path, max_state_values=50_000)) as client:
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        synthetic = client.post(
            "/jobs/ptq", json={"checkpoint_id": parent, "eval_states": {"synthetic": {"n_states": 6251, "seed": 1}}}
        )
        assert synthetic.status_code == 422
        assert (
            synthetic.json()["detail"]
            == "eval_states would hold 6251 x 8 = 50008 values, over the limit of 50000; RECOMB_MAX_STATE_VALUES raises it"
        )
        upload = client.post("/states", files={"file": ("s.npy", _npy(np.zeros((6251, 8), np.float32)))})
        assert upload.status_code == 422 and upload.json()["detail"].endswith(
            "over the limit of 50000; RECOMB_MAX_STATE_VALUES raises it"
        )
        assert (
            client.post("/states", files={"file": ("s.npy", _npy(np.zeros((6250, 8), np.float32)))}).status_code == 201
        )
        search = client.post("/jobs/search", json={"parent_a_id": parent, "parent_b_id": parent, "n_states": 6251})
        assert search.status_code == 422 and search.json()["detail"].startswith(
            "n_states would hold 6251 x 8 = 50008 values"
        )


def test_hostile_files_are_422_before_allocation(client):
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    claims_a_terabyte = np.lib.format.magic(1, 0) + buffer.getvalue()[8:] + bytes(64)
    response = client.post("/states", files={"file": ("big.npy", claims_a_terabyte)})
    assert (
        response.status_code == 422
        and response.json()["detail"] == "at most 1000000 states are accepted, got 1000000000000"
    )

    network = io.BytesIO()
    torch.save(QNetwork(QNetworkArch(hidden_size=4096)).state_dict(), network)
    plain, deflated = zipfile.ZipFile(io.BytesIO(network.getvalue())), io.BytesIO()
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in plain.infolist():
            archive.writestr(
                entry.filename, bytes(entry.file_size) if "/data/" in entry.filename else plain.read(entry.filename)
            )
    with client_for(
        make_settings(client.app.state.settings.data_dir.parent / "small", max_upload_bytes=1_000_000)
    ) as small:
        response = small.post("/checkpoints", files={"file": ("bomb.pt", deflated.getvalue())})
    assert len(deflated.getvalue()) < 1_000_000
    assert response.status_code == 422
    assert response.json()["detail"].startswith("the zip unpacks to 67") and response.json()["detail"].endswith(
        "RECOMB_MAX_UPLOAD_BYTES raises it"
    )


def test_idempotency_key_is_scoped_to_caller_and_route_and_checks_the_body(tmp_path):
    with client_for(make_settings(tmp_path, api_keys=",".join(KEYS))) as client:
        alpha, beta = bearer(KEYS[0]), bearer(KEYS[1])
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}, headers=alpha).json()["id"]
        key = {"Idempotency-Key": "order-1"}
        first = client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=alpha | key)
        again = client.post(
            "/jobs/ptq", json={"mode": "dynamic", "checkpoint_id": parent}, headers=alpha | key
        )  # the default, spelled out
        assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
        again_compact = client.post(
            "/jobs/ptq",
            content=json.dumps({"checkpoint_id": parent}, separators=(",", ":")),
            headers=alpha | key | {"Content-Type": "application/json"},
        )
        assert again_compact.json()["id"] == first.json()["id"]  # the same request, however it is spelled

        conflict = client.post("/jobs/ptq", json={"checkpoint_id": parent, "mode": "static"}, headers=alpha | key)
        assert conflict.status_code == 422
        assert (
            conflict.json()["detail"]
            == "Idempotency-Key 'order-1' was already used for a different request to POST /jobs/ptq; send the same request to get its result, or use a new key"
        )

        other_route = client.post("/jobs/distill", json={"teacher_id": parent, "epochs": 1}, headers=alpha | key)
        other_caller = client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=beta | key)
        assert other_route.status_code == other_caller.status_code == 202
        assert len({first.json()["id"], other_route.json()["id"], other_caller.json()["id"]}) == 3
        assert client.get("/jobs", headers=alpha).json()["total"] == 3


def test_idempotency_key_expires_after_its_window(tmp_path):
    settings = make_settings(tmp_path, idempotency_window_s=3600)
    with client_for(settings) as client:
        key = {"Idempotency-Key": "nightly"}
        first = client.post("/checkpoints/synthetic", json={"seed": 3}, headers=key).json()["id"]
        assert client.post("/checkpoints/synthetic", json={"seed": 3}, headers=key).json()["id"] == first
        with Session(get_engine(settings)) as session:  # the record is now 61 minutes old
            session.exec(update(IdempotencyRecord).values(created_at=utcnow().replace(microsecond=0) - _minutes(61)))
            session.commit()
        fresh = client.post(
            "/checkpoints/synthetic", json={"seed": 4}, headers=key
        )  # a new body is fine once the key expired
        assert fresh.status_code == 201 and fresh.json()["id"] != first
        assert client.post("/checkpoints/synthetic", json={"seed": 4}, headers=key).json()["id"] == fresh.json()["id"]


def test_the_queue_bound_gives_each_caller_a_fair_share(tmp_path):
    with client_for(make_settings(tmp_path, api_keys=",".join(KEYS), max_queued_jobs=4)) as client:
        alpha, beta = bearer(KEYS[0]), bearer(KEYS[1])
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}, headers=alpha).json()["id"]
        statuses = [
            client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=alpha).status_code for _ in range(5)
        ]
        assert statuses == [202, 202, 202, 202, 429]
        refused = client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=alpha)
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["detail"].startswith(
            "4 jobs are queued, past the bound of 4 (RECOMB_MAX_QUEUED_JOBS), and this caller holds 4, its fair share being 4"
        )
        # Another caller still gets its share (half the bound, with two callers) while the first waits.
        assert [
            client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=beta).status_code for _ in range(3)
        ] == [202, 202, 429]
        queued = client.get("/jobs", params={"status": "queued"}, headers=alpha).json()["items"]
        client.post(f"/jobs/{queued[-1]['id']}/cancel", headers=alpha)  # alpha's oldest leaves the queue...
        client.post(f"/jobs/{queued[-2]['id']}/cancel", headers=alpha)
        client.post(f"/jobs/{queued[-3]['id']}/cancel", headers=alpha)
        time.sleep(QUEUE_COUNTS_MAX_AGE_S)  # the API reads the counts again
        assert (
            client.post("/jobs/ptq", json={"checkpoint_id": parent}, headers=alpha).status_code == 202
        )  # ...and alpha is under its share again


def test_slots_let_a_few_in_and_refuse_the_rest_with_retry_after():
    """Three submissions at once against two slots: two are served, the third waits 0.1 s and gets 429."""
    served: list[str] = []

    async def slow_app(scope, receive, send):
        await anyio.sleep(0.5)
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate = Slots(
        slow_app,
        matches=is_submission,
        slots=2,
        wait_s=SUBMIT_SLOT_WAIT_S,
        what="job submissions",
        setting="RECOMB_SUBMIT_CONCURRENCY",
    )
    statuses: list[int] = []

    async def submit(path: str) -> None:
        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                if message["status"] == 429:
                    assert dict(message["headers"])[b"retry-after"] == b"1"

        await gate({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)

    async def burst():
        async with anyio.create_task_group() as group:
            for path in ("/jobs/ptq", "/jobs/distill", "/jobs/search"):
                group.start_soon(submit, path)
            group.start_soon(
                submit, "/jobs/job_00000000000000000000/cancel"
            )  # a cancel is not a submission: never held back

    started = time.perf_counter()
    anyio.run(burst)
    assert sorted(statuses) == [202, 202, 202, 429]
    assert len(served) == 3 and "/jobs/job_00000000000000000000/cancel" in served
    assert (
        time.perf_counter() - started < 1.0
    )  # the refused one was answered after its 0.1 s wait, not after the others


def test_only_non_blocking_handlers_run_on_the_event_loop():
    """An ``async def`` route runs on the event loop: it may not touch the database or parse files (those are plain functions, run in threads)."""
    routers = (checkpoints, job_events, health, jobs, monitoring, reports, state_buffers, dashboard)
    on_loop = {
        route.path
        for module in routers
        for route in module.router.routes
        if isinstance(route, APIRoute) and _is_coroutine(route.endpoint)
    }
    assert on_loop == {"/healthz", "/jobs/{job_id}/events"}  # the stream reads the database through anyio.to_thread


def _is_coroutine(function) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _minutes(count: int):
    from datetime import timedelta

    return timedelta(minutes=count)
