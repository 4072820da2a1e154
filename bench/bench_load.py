"""Bounded load on the Redis + PostgreSQL stack: many clients queue PTQ jobs at once, on loopback only.

Starts the real API and 2 workers as subprocesses (a database and Redis key
prefix of their own), then 50 concurrent clients POST /jobs/ptq as fast as
they are answered for 30 s. Once the queue has drained, it checks through
the API that every accepted job reached a terminal state exactly once (no job
lost, none duplicated, one output and one report each) and records accepted
jobs/s, POST latency and queue-to-start latency (``started_at - created_at``)
in bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from bench.common import write_result
from tests.integration.stack import TERMINAL, postgres_stack

PAGE_SIZE = 500
DRAIN_TIMEOUT_S = 900.0
TRANSPORT_ATTEMPTS = 3


async def post_job(client: httpx.AsyncClient, parent_id: str, retried: list[int]) -> httpx.Response:
    """POST one job; a dropped connection is retried with the same Idempotency-Key, so it is never counted twice or lost."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(TRANSPORT_ATTEMPTS):
        try:
            return await client.post("/jobs/ptq", json={"checkpoint_id": parent_id}, headers=headers)
        except httpx.TransportError:
            if attempt == TRANSPORT_ATTEMPTS - 1:
                raise
            retried.append(1)
    raise AssertionError("unreachable")


async def client_loop(client: httpx.AsyncClient, parent_id: str, deadline: float, accepted: list[str], post_latencies_s: list[float], refused: dict[int, int], retried: list[int]) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await post_job(client, parent_id, retried)
        post_latencies_s.append(time.perf_counter() - started)
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        else:
            refused[response.status_code] = refused.get(response.status_code, 0) + 1


async def submit_for(url: str, parent_id: str, clients: int, duration_s: float) -> tuple[list[str], list[float], dict[int, int], int, float]:
    accepted: list[str] = []
    post_latencies_s: list[float] = []
    refused: dict[int, int] = {}
    retried: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(*(client_loop(client, parent_id, deadline, accepted, post_latencies_s, refused, retried) for _ in range(clients)))
        elapsed_s = time.monotonic() - started
    return accepted, post_latencies_s, refused, len(retried), elapsed_s


def all_jobs(client: httpx.Client) -> list[dict]:
    jobs: list[dict] = []
    while True:
        page = client.get("/jobs", params={"kind": "ptq", "limit": PAGE_SIZE, "offset": len(jobs)}).json()
        jobs.extend(page["items"])
        if len(jobs) >= page["total"] or not page["items"]:
            return jobs


def wait_drained(client: httpx.Client, timeout_s: float) -> float:
    """Seconds until no job is queued or running."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        pending = sum(client.get("/jobs", params={"status": status, "limit": 1}).json()["total"] for status in ("queued", "running"))
        if pending == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"jobs still pending after {timeout_s}s")


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    values_ms = np.asarray(samples_s) * 1000.0
    return {"n": int(values_ms.size), "p50": float(np.percentile(values_ms, 50)), "p95": float(np.percentile(values_ms, 95)), "p99": float(np.percentile(values_ms, 99)), "max": float(values_ms.max())}


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def check_exactly_once(client: httpx.Client, accepted: list[str]) -> tuple[list[dict], dict[str, int]]:
    """Every accepted job, once, finished, with one output and one report; nothing else was created."""
    jobs = all_jobs(client)
    ids = [job["id"] for job in jobs]
    counts = {
        "lost_jobs": len(set(accepted) - set(ids)),
        "unexpected_jobs": len(set(ids) - set(accepted)),
        "duplicated_jobs": (len(ids) - len(set(ids))) + (len(accepted) - len(set(accepted))),
    }
    assert not any(counts.values()), counts
    assert all(job["status"] in TERMINAL for job in jobs)
    assert all(len(job["output_checkpoint_ids"]) == (1 if job["status"] == "succeeded" else 0) for job in jobs)
    succeeded = sum(job["status"] == "succeeded" for job in jobs)
    assert client.get("/reports", params={"kind": "ptq", "limit": 1}).json()["total"] == succeeded
    assert client.get("/checkpoints", params={"format": "int8", "limit": 1}).json()["total"] == succeeded
    return jobs, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of submitting")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        stack, drop_database = postgres_stack(Path(root))
        try:
            stack.start(workers=args.workers)
            client = stack.client
            parent_id = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
            accepted, post_latencies_s, refused, transport_retries, submit_s = asyncio.run(submit_for(stack.url, parent_id, args.clients, args.duration))
            drain_s = wait_drained(client, DRAIN_TIMEOUT_S)
            jobs, exactly_once = check_exactly_once(client, accepted)
        finally:
            stack.stop()
            drop_database()
    statuses = {status: sum(job["status"] == status for job in jobs) for status in TERMINAL}
    queue_to_start_s = [seconds_between(job["created_at"], job["started_at"]) for job in jobs if job["started_at"]]
    first_created = min(job["created_at"] for job in jobs)
    last_finished = max(job["finished_at"] for job in jobs)
    result = {
        "stack": "postgres + redis, loopback",
        "clients": args.clients,
        "workers": args.workers,
        "submit_seconds": round(submit_s, 2),
        "network": "8-64-64-4 synthetic, dynamic PTQ, 1000 evaluation states",
        "accepted_jobs": len(accepted),
        "refused_posts": refused,
        "posts_retried_after_a_dropped_connection": transport_retries,
        "accepted_jobs_per_s": len(accepted) / submit_s,
        "completed_jobs_per_s": len(jobs) / seconds_between(first_created, last_finished),
        "drain_seconds_after_submitting": round(drain_s, 2),
        "terminal_statuses": statuses,
        **exactly_once,
        "post_latency_ms": percentiles_ms(post_latencies_s),
        "queue_to_start_ms": percentiles_ms(queue_to_start_s),
    }
    write_result("load", result)
    print(
        f"accepted {len(accepted)} jobs in {submit_s:.1f}s ({result['accepted_jobs_per_s']:.1f}/s), completed {result['completed_jobs_per_s']:.1f}/s; "
        f"POST p50 {result['post_latency_ms']['p50']:.0f} ms p99 {result['post_latency_ms']['p99']:.0f} ms; "
        f"queue-to-start p50 {result['queue_to_start_ms']['p50']:.0f} ms p99 {result['queue_to_start_ms']['p99']:.0f} ms; "
        f"statuses {statuses}"
    )


if __name__ == "__main__":
    main()
