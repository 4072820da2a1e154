"""Where one PTQ job's milliseconds go, POST to `succeeded`, on Redis + PostgreSQL with one warm worker.

Jobs are submitted one after another; for each, the phases come from the
service itself: the API's ``Server-Timing`` header (admit: validation,
references, work and queue checks; commit; publish; view) and the worker's
last log line (``timings_ms``: queued = publish to claim, claim, load,
compute, write). ``http`` is the client-observed POST time minus the API's
phases (request parsing, routing, serialisation, loopback), ``notice`` is
what is left of POST-to-succeeded: the client's polling (every 2 ms) seeing
the final status. Writes bench/results/job_breakdown.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import write_result
from tests.integration.stack import Stack, postgres_stack

POLL_INTERVAL_S = 0.002
API_PHASES = ("admit", "commit", "publish", "view")
WORKER_PHASES = ("queued", "claim", "load", "compute", "write")


def server_timing(header: str) -> dict[str, float]:
    phases = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        phases[name] = float(duration)
    return phases


def worker_timings(stack: Stack) -> dict[str, dict[str, float]]:
    """``timings_ms`` of every finished job in the worker's log, by job id."""
    timings = {}
    for line in (stack.root / "worker1.log").read_text(errors="replace").splitlines():
        if '"timings_ms"' in line:
            entry = json.loads(line)
            timings[entry["job_id"]] = entry["timings_ms"]
    return timings


def measure(stack: Stack, jobs: int, warmup: int) -> list[dict[str, float]]:
    client = stack.client
    parent_id = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
    samples = []
    for index in range(warmup + jobs):
        started = time.perf_counter()
        response = client.post("/jobs/ptq", json={"checkpoint_id": parent_id})
        posted = time.perf_counter()
        job = response.json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(POLL_INTERVAL_S)
            job = client.get(f"/jobs/{job['id']}").json()
        finished = time.perf_counter()
        assert job["status"] == "succeeded", job["error"]
        if index >= warmup:
            samples.append(
                {
                    "id": job["id"],
                    "post_ms": (posted - started) * 1000,
                    "total_ms": (finished - started) * 1000,
                    **server_timing(response.headers["Server-Timing"]),
                }
            )
    time.sleep(0.5)  # the worker's last log lines
    by_job = worker_timings(stack)
    breakdown = []
    for sample in samples:
        worker = by_job[sample["id"]]
        row = {phase: sample[phase] for phase in API_PHASES}
        row["http"] = sample["post_ms"] - sum(row.values())
        row |= {phase: worker[phase] for phase in WORKER_PHASES}
        # "queued" runs from the commit's published_at, so it overlaps the API's publish and view and the POST's return.
        row["notice"] = (
            sample["total_ms"]
            - sample["post_ms"]
            - (worker["queued"] - row["publish"] - row["view"])
            - sum(worker[phase] for phase in WORKER_PHASES[1:])
        )
        row["total"] = sample["total_ms"]
        breakdown.append(row)
    return breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        stack, cleanup = postgres_stack(Path(root))
        try:
            stack.start(workers=1)
            rows = measure(stack, args.jobs, args.warmup)
        finally:
            stack.stop()
            cleanup()
    phases = [*API_PHASES, "http", *WORKER_PHASES, "notice", "total"]
    medians = {phase: statistics.median(row[phase] for row in rows) for phase in phases}
    write_result(
        "job_breakdown",
        {
            "stack": "postgres + redis, loopback, 1 worker",
            "job": "ptq, 8-64-64-4 synthetic, dynamic, 1000 evaluation states",
            "jobs": args.jobs,
            "median_ms": medians,
            "note": "queued overlaps the API's publish and view phases; the medians of the parts need not add up to the median total",
        },
    )
    print("  ".join(f"{phase} {value:.1f}" for phase, value in medians.items()))


if __name__ == "__main__":
    main()
