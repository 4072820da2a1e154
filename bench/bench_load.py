"""Bounded load on the Redis + PostgreSQL stack: many clients queue PTQ jobs at once, on loopback only.

Starts the real API (``--processes 2``) and 2 workers as subprocesses (a
database and Redis key prefix of their own, two API keys), then, per run, 50
concurrent clients POST /jobs/ptq as fast as they are answered for 30 s:
40 clients with one key and 10 with the other, so the queue's fair share per
key shows. A client answered 429 waits the Retry-After it was given, as a
polite client does. Once the queue has drained, it checks through the API
that every job accepted in the run reached a terminal state exactly once (no
job lost, none duplicated, one output and one report each). Runs are
repeated (``--runs``, 5 by default) on the same stack, and each figure is
the median over runs: accepted jobs/s, POST latency of accepted POSTs
(p50/p99), 429s, queue-to-start latency. Writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench.common import write_result
from tests.integration.stack import TERMINAL, Stack, postgres_stack

PAGE_SIZE = 500
DRAIN_TIMEOUT_S = 900.0
TRANSPORT_ATTEMPTS = 3
KEYS = {"busy": f"key-{uuid.uuid4().hex}", "light": f"key-{uuid.uuid4().hex}"}
CLIENTS_PER_KEY = {"busy": 0.8, "light": 0.2}


class Tally:
    """What one run's clients saw."""

    def __init__(self) -> None:
        self.accepted: dict[str, list[str]] = {name: [] for name in KEYS}
        self.accepted_latencies_s: list[float] = []
        self.accepted_at_s: list[float] = []  # when each accepted POST was sent, from the run's start
        self.refused: dict[str, int] = {}
        self.queue_full_at_s: float | None = None  # when the queue bound first refused a POST
        self.retried = 0


async def post_job(client: httpx.AsyncClient, parent_id: str, tally: Tally) -> httpx.Response:
    """POST one job; a dropped connection is retried with the same Idempotency-Key, so it is never counted twice or lost."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(TRANSPORT_ATTEMPTS):
        try:
            return await client.post("/jobs/ptq", json={"checkpoint_id": parent_id}, headers=headers)
        except httpx.TransportError:
            if attempt == TRANSPORT_ATTEMPTS - 1:
                raise
            tally.retried += 1
    raise AssertionError("unreachable")


async def client_loop(
    client: httpx.AsyncClient, key_name: str, parent_id: str, run_started: float, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        sent_at = time.monotonic() - run_started
        response = await post_job(client, parent_id, tally)
        elapsed = time.perf_counter() - started
        if response.status_code == 202:
            tally.accepted[key_name].append(response.json()["id"])
            tally.accepted_latencies_s.append(elapsed)
            tally.accepted_at_s.append(sent_at)
            continue
        reason = (
            "queue bound"
            if "RECOMB_MAX_QUEUED_JOBS" in response.text
            else "submission slots"
            if "RECOMB_SUBMIT_CONCURRENCY" in response.text
            else str(response.status_code)
        )
        tally.refused[reason] = tally.refused.get(reason, 0) + 1
        if reason == "queue bound" and tally.queue_full_at_s is None:
            tally.queue_full_at_s = sent_at
        retry_after = float(response.headers.get("Retry-After", "1"))
        await asyncio.sleep(min(retry_after, max(0.0, deadline - time.monotonic())))


async def submit_for(url: str, parent_id: str, clients: int, duration_s: float) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    counts = {"busy": round(clients * CLIENTS_PER_KEY["busy"])}
    counts["light"] = clients - counts["busy"]
    sessions = {
        name: httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits, headers={"Authorization": f"Bearer {key}"})
        for name, key in KEYS.items()
    }
    try:
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(
            *(
                client_loop(sessions[name], name, parent_id, started, deadline, tally)
                for name, count in counts.items()
                for _ in range(count)
            )
        )
        elapsed_s = time.monotonic() - started
    finally:
        for session in sessions.values():
            await session.aclose()
    return tally, elapsed_s


def jobs_since(client: httpx.Client, since: datetime) -> list[dict]:
    """Every PTQ job created at or after ``since`` (the list is newest first)."""
    jobs: list[dict] = []
    while True:
        page = client.get("/jobs", params={"kind": "ptq", "limit": PAGE_SIZE, "offset": len(jobs)}).json()
        fresh = [job for job in page["items"] if datetime.fromisoformat(job["created_at"]) >= since]
        jobs.extend(fresh)
        if len(fresh) < len(page["items"]) or not page["items"]:
            return jobs


def wait_drained(client: httpx.Client, timeout_s: float) -> float:
    """Seconds until no job is queued or running."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        pending = sum(
            client.get("/jobs", params={"status": status, "limit": 1}).json()["total"]
            for status in ("queued", "running")
        )
        if pending == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"jobs still pending after {timeout_s}s")


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    values_ms = np.asarray(samples_s) * 1000.0
    return {
        "n": int(values_ms.size),
        "p50": float(np.percentile(values_ms, 50)),
        "p95": float(np.percentile(values_ms, 95)),
        "p99": float(np.percentile(values_ms, 99)),
        "max": float(values_ms.max()),
    }


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def check_exactly_once(client: httpx.Client, accepted: list[str], since: datetime) -> tuple[list[dict], dict[str, int]]:
    """Every job accepted in the run, once, finished, with one output; nothing else was created; one report per success so far."""
    jobs = jobs_since(client, since)
    ids = [job["id"] for job in jobs]
    counts = {
        "lost_jobs": len(set(accepted) - set(ids)),
        "unexpected_jobs": len(set(ids) - set(accepted)),
        "duplicated_jobs": (len(ids) - len(set(ids))) + (len(accepted) - len(set(accepted))),
    }
    assert not any(counts.values()), counts
    assert all(job["status"] in TERMINAL for job in jobs)
    assert all(len(job["output_checkpoint_ids"]) == (1 if job["status"] == "succeeded" else 0) for job in jobs)
    # Over every run so far (the stack holds nothing else): one report and one int8 checkpoint per succeeded job.
    succeeded = client.get("/jobs", params={"kind": "ptq", "status": "succeeded", "limit": 1}).json()["total"]
    assert client.get("/reports", params={"kind": "ptq", "limit": 1}).json()["total"] == succeeded
    assert client.get("/checkpoints", params={"format": "int8", "limit": 1}).json()["total"] == succeeded
    return jobs, counts


def _split_percentiles(tally: Tally, before: bool) -> dict[str, float] | None:
    cut = tally.queue_full_at_s if tally.queue_full_at_s is not None else float("inf")
    samples = [
        latency for latency, sent in zip(tally.accepted_latencies_s, tally.accepted_at_s) if (sent < cut) == before
    ]
    return percentiles_ms(samples) if samples else None


def one_run(stack: Stack, parent_id: str, clients: int, duration_s: float) -> dict:
    client = stack.client
    since = datetime.now(UTC)
    tally, submit_s = asyncio.run(submit_for(stack.url, parent_id, clients, duration_s))
    drain_s = wait_drained(client, DRAIN_TIMEOUT_S)
    accepted = [job_id for ids in tally.accepted.values() for job_id in ids]
    jobs, exactly_once = check_exactly_once(client, accepted, since)
    queue_to_start_s = [seconds_between(job["created_at"], job["started_at"]) for job in jobs if job["started_at"]]
    return {
        "submit_seconds": round(submit_s, 2),
        "accepted_jobs": len(accepted),
        "accepted_by_key": {name: len(ids) for name, ids in tally.accepted.items()},
        "refused_posts": tally.refused,
        "posts_retried_after_a_dropped_connection": tally.retried,
        "accepted_jobs_per_s": len(accepted) / submit_s,
        "completed_jobs_per_s": len(jobs)
        / seconds_between(min(job["created_at"] for job in jobs), max(job["finished_at"] for job in jobs)),
        "drain_seconds_after_submitting": round(drain_s, 2),
        "terminal_statuses": {status: sum(job["status"] == status for job in jobs) for status in TERMINAL},
        **exactly_once,
        "accepted_post_latency_ms": percentiles_ms(tally.accepted_latencies_s),
        # While the queue fills every client is admitted and the API runs flat out; at the bound most get 429 and wait.
        "queue_full_at_s": tally.queue_full_at_s,
        "accepted_post_latency_ms_while_filling": _split_percentiles(tally, before=True),
        "accepted_post_latency_ms_at_the_bound": _split_percentiles(tally, before=False),
        "queue_to_start_ms": percentiles_ms(queue_to_start_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of submitting per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--api-processes", type=int, default=2)
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="RECOMB_NAME=VALUE",
        help="a setting for the stack's processes (repeatable)",
    )
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as root:
        stack, drop_database = postgres_stack(Path(root))
        stack.env["RECOMB_API_KEYS"] = ",".join(KEYS.values())
        stack.env |= dict(setting.split("=", 1) for setting in args.setting)
        try:
            stack.start(workers=args.workers, api_processes=args.api_processes)
            stack.client.headers["Authorization"] = f"Bearer {KEYS['busy']}"
            parent_id = stack.client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
            for _ in range(args.runs):
                runs.append(one_run(stack, parent_id, args.clients, args.duration))
                print(
                    {
                        key: runs[-1][key]
                        for key in (
                            "accepted_jobs_per_s",
                            "accepted_by_key",
                            "refused_posts",
                            "accepted_post_latency_ms",
                        )
                    },
                    flush=True,
                )
            max_queued_jobs = stack.settings.max_queued_jobs
        finally:
            stack.stop()
            drop_database()

    def median_of(*path: str) -> float:
        values = []
        for run in runs:
            value = run
            for part in path:
                value = value[part]
            values.append(value)
        return statistics.median(values)

    result = {
        "stack": "postgres + redis, loopback",
        "clients": args.clients,
        "clients_per_key": {name: round(args.clients * share) for name, share in CLIENTS_PER_KEY.items()},
        "workers": args.workers,
        "api_processes": args.api_processes,
        "max_queued_jobs": max_queued_jobs,
        "settings": args.setting,
        "submit_seconds_per_run": args.duration,
        "network": "8-64-64-4 synthetic, dynamic PTQ, 1000 evaluation states",
        "median_of_runs": {
            "accepted_jobs_per_s": median_of("accepted_jobs_per_s"),
            "completed_jobs_per_s": median_of("completed_jobs_per_s"),
            "accepted_post_latency_ms_p50": median_of("accepted_post_latency_ms", "p50"),
            "accepted_post_latency_ms_p99": median_of("accepted_post_latency_ms", "p99"),
            "accepted_post_latency_ms_p99_at_the_bound": median_of("accepted_post_latency_ms_at_the_bound", "p99"),
            "queue_to_start_ms_p50": median_of("queue_to_start_ms", "p50"),
            "queue_to_start_ms_p99": median_of("queue_to_start_ms", "p99"),
        },
        "lost_jobs": sum(run["lost_jobs"] for run in runs),
        "duplicated_jobs": sum(run["duplicated_jobs"] for run in runs),
        "runs": runs,
    }
    write_result("load", result)


if __name__ == "__main__":
    main()
