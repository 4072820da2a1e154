"""Hostile load on the real stacks: a burst of uploads, identical content at once, runaway jobs cancelled, jobs over their limits.

The API must keep answering ``/healthz`` within half a second while uploads
pour in, bound them (201 or 429, never a hang or a 500) and leave no
database connection idle in a transaction; a cancel must stop any job within
2 s; a job over its time or memory limit fails with a one-line error and the
worker goes on to the next job.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy.engine import make_url

from tests.integration.stack import POSTGRES_ADMIN_URL, TERMINAL, Stack, embedded_stack

pytestmark = pytest.mark.integration

UPLOADS = {"embedded": 20, "postgres": 100}
UPLOAD_CONCURRENCY = 4  # the default RECOMB_UPLOAD_CONCURRENCY
HEALTH_BUDGET_S = 0.5
CANCEL_BUDGET_S = 2.0


def npy_bytes(rows: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32))
    return buffer.getvalue()


async def upload_burst(url: str, files: list[bytes]) -> tuple[list[httpx.Response], float]:
    """Every upload at once; returns the responses and the burst's wall time."""
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=httpx.Limits(max_connections=len(files))) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post("/states", files={"file": (f"s{index}.npy", data)}) for index, data in enumerate(files))
        )
        return responses, time.perf_counter() - started


class HealthProbe:
    """Times ``GET /healthz`` every 50 ms from a thread of its own, so the burst's client never delays a probe."""

    def __init__(self, url: str) -> None:
        self.url, self.latencies_s, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.latencies_s.append(time.perf_counter() - started)
                self.stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self.thread.start()
        time.sleep(0.2)  # a connection open and a first answer before the burst
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def idle_in_transaction(stack: Stack) -> int:
    import psycopg

    database = make_url(stack.env["RECOMB_DATABASE_URL"]).database
    with psycopg.connect(POSTGRES_ADMIN_URL) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state LIKE 'idle in transaction%%'",
            (database,),
        ).fetchone()[0]


def test_a_burst_of_uploads_is_bounded_and_never_starves_health(stack):
    client = stack.client
    before = client.get("/states").json()["total"]
    files = [npy_bytes(5000, seed) for seed in range(UPLOADS[stack.name])]  # 160 KB each, all different

    with HealthProbe(stack.url) as health:
        responses, elapsed = asyncio.run(upload_burst(stack.url, files))
    probes = health.latencies_s

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 429}, [
        response.text for response in responses if response.status_code not in (201, 429)
    ]
    assert elapsed < 10.0
    assert statuses.count(201) >= UPLOAD_CONCURRENCY
    assert all(response.headers["Retry-After"] == "1" for response in responses if response.status_code == 429)
    assert probes and max(probes) < HEALTH_BUDGET_S, f"slowest /healthz {max(probes):.3f}s over {len(probes)} probes"
    assert client.get("/states").json()["total"] == before + statuses.count(
        201
    )  # every 201 stored, nothing refused was
    if stack.name == "postgres":
        deadline = time.monotonic() + 2.0
        while idle_in_transaction(stack) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert idle_in_transaction(stack) == 0


def test_more_requests_than_pooled_connections_are_served_without_waiting_for_the_pool(stack):
    """60 clients read at once, 3 times each: more requests than the 20 pooled connections (a deadlock shows as the pool's 30 s timeout)."""

    async def reader(client: httpx.AsyncClient, path: str) -> list[tuple[int, float]]:
        seen = []
        for _ in range(3):
            started = time.perf_counter()
            seen.append(((await client.get(path)).status_code, time.perf_counter() - started))
        return seen

    async def crowd() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(
            base_url=stack.url, timeout=60.0, limits=httpx.Limits(max_connections=60, max_keepalive_connections=60)
        ) as client:
            results = await asyncio.gather(
                *(
                    reader(client, ("/jobs?limit=5", "/checkpoints?limit=5", "/reports")[index % 3])
                    for index in range(60)
                )
            )
        return [item for seen in results for item in seen]

    answers = asyncio.run(crowd())
    assert {status for status, _ in answers} <= {200, 503}
    assert sum(status == 200 for status, _ in answers) >= 170
    assert max(seconds for _, seconds in answers) < 15.0


def test_identical_content_at_once_is_stored_once_and_never_500s(stack):
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=stack.url, timeout=60.0, limits=httpx.Limits(max_connections=25)
        ) as client:
            return await asyncio.gather(*(client.post("/checkpoints/synthetic", json={"seed": 777}) for _ in range(20)))

    responses = asyncio.run(burst())
    assert [response.status_code for response in responses] == [201] * 20, [
        response.text for response in responses if response.status_code != 201
    ]
    assert len({response.json()["sha256"] for response in responses}) == 1
    assert len({response.json()["id"] for response in responses}) == 20


def wait_for(stack: Stack, job_id: str, condition, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = stack.client.get(f"/jobs/{job_id}").json()
        if condition(job):
            return job
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id}: {job['status']} {job['stage']}\n{stack.logs()}")


def cancel_within_budget(stack: Stack, kind: str, body: dict) -> float:
    """Submit, wait until it runs, cancel; seconds from the cancel request to ``cancelled``."""
    response = stack.client.post(f"/jobs/{kind}", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(stack, job_id, lambda job: job["status"] == "running")
    time.sleep(0.5)  # past loading its inputs, into its long loop
    started = time.perf_counter()
    assert stack.client.post(f"/jobs/{job_id}/cancel").status_code == 202
    job = wait_for(stack, job_id, lambda job: job["status"] in TERMINAL, timeout_s=30)
    assert job["status"] == "cancelled", job
    return time.perf_counter() - started


def test_cancel_stops_any_long_loop_within_two_seconds(stack):
    client = stack.client
    parent = client.post("/checkpoints/synthetic", json={"seed": 901}).json()["id"]
    int8 = stack.wait_job(client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"])[
        "output_checkpoint_ids"
    ][0]
    runaway = {
        "validate-quantized": {"float_id": parent, "quant_id": int8, "latency_repeats": 1_000_000},
        "validate-distillation": {
            "teacher_id": parent,
            "student_id": parent,
            "rollout_episodes": 100_000,
            "rollout_max_steps": 1000,
        },
        "distill": {"teacher_id": parent, "batch_size": 1, "states": {"synthetic": {"n_states": 100_000, "seed": 5}}},
    }
    seconds = {kind: cancel_within_budget(stack, kind, body) for kind, body in runaway.items()}
    assert all(value < CANCEL_BUDGET_S for value in seconds.values()), seconds
    after = stack.wait_job(client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"])
    assert after["status"] == "succeeded"  # the workers went on serving


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory):
    """An embedded stack with one worker, a 1.5 s time limit on distill jobs and a 64 MiB memory limit on validate-distillation jobs."""
    running = embedded_stack(Path(tmp_path_factory.mktemp("limited")))
    running.env |= {
        "RECOMB_JOB_TIME_LIMITS_S": '{"distill": 1.5}',
        "RECOMB_JOB_MEMORY_LIMITS_MB": '{"validate-distillation": 64}',
    }
    try:
        yield running.start(workers=1)
    finally:
        running.stop()


def test_jobs_over_their_time_or_memory_limit_fail_in_one_line_and_the_worker_goes_on(limited_stack):
    stack, client = limited_stack, limited_stack.client
    parent = client.post("/checkpoints/synthetic", json={"seed": 902}).json()["id"]

    slow = stack.wait_job(client.post("/jobs/distill", json={"teacher_id": parent, "epochs": 500}).json()["id"])
    assert slow["status"] == "failed"
    assert slow["error"].startswith("JobLimitExceeded: stopped after 1.")
    assert slow["error"].endswith(
        "s, over the 1.5 s time limit of distill jobs (RECOMB_JOB_TIME_LIMIT_S, or per kind RECOMB_JOB_TIME_LIMITS_S)"
    )
    assert slow["output_checkpoint_ids"] == [] and slow["report_id"] is None

    big = {"teacher_id": parent, "student_id": parent, "states": {"synthetic": {"n_states": 1_000_000, "seed": 3}}}
    heavy = stack.wait_job(client.post("/jobs/validate-distillation", json=big).json()["id"])
    assert heavy["status"] == "failed"
    assert heavy["error"].startswith("JobLimitExceeded: stopped after adding ")
    assert heavy["error"].endswith(
        "MiB to its worker, over the 64 MiB memory limit of validate-distillation jobs (RECOMB_JOB_MEMORY_LIMIT_MB, or per kind RECOMB_JOB_MEMORY_LIMITS_MB)"
    )
    assert "\n" not in slow["error"] + heavy["error"]

    fine = stack.wait_job(client.post("/jobs/distill", json={"teacher_id": parent, "epochs": 2}).json()["id"])
    assert fine["status"] == "succeeded" and len(fine["output_checkpoint_ids"]) == 1
