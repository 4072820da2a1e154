"""End-to-end PTQ job latency: POST /jobs/ptq to `succeeded`, with warm workers, both stacks interleaved.

Runs the real API and one worker as subprocesses on each stack (embedded,
and Redis + PostgreSQL), both up at once, and alternates between them: each
run submits ``--jobs`` jobs one after another on a synthetic 8-64-4 parent,
and each figure is the median over ``--runs`` runs of the runs' medians, so
a drift in the machine's load hits both stacks alike. Two measures per job:
``post_to_finished`` from the client's POST to the job's ``finished_at``
(the same machine's clock; no polling in it), and ``post_to_seen`` until a
client polling every 2 ms saw ``succeeded``. Writes bench/results/ptq_job.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import summarise_ms, write_result
from tests.integration.stack import Stack, embedded_stack, postgres_stack

POLL_INTERVAL_S = 0.002


def run_jobs(stack: Stack, parent_id: str, jobs: int) -> dict[str, list[float]]:
    client = stack.client
    samples: dict[str, list[float]] = {"post": [], "post_to_finished": [], "post_to_seen": []}
    for _ in range(jobs):
        wall_started, started = time.time(), time.perf_counter()
        job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
        posted = time.perf_counter()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(POLL_INTERVAL_S)
            job = client.get(f"/jobs/{job['id']}").json()
        seen = time.perf_counter()
        assert job["status"] == "succeeded", job["error"]
        samples["post"].append(posted - started)
        samples["post_to_finished"].append(
            datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp() - wall_started
        )
        samples["post_to_seen"].append(seen - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20, help="jobs per run")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    per_run: dict[str, list[dict]] = {"embedded": [], "postgres": []}
    with tempfile.TemporaryDirectory() as root:
        embedded = embedded_stack(Path(root) / "embedded")
        (Path(root) / "embedded").mkdir(parents=True, exist_ok=True)
        postgres, cleanup = postgres_stack(Path(root) / "postgres")
        (Path(root) / "postgres").mkdir(parents=True, exist_ok=True)
        stacks = {"embedded": embedded, "postgres": postgres}
        try:
            parents = {}
            for name, stack in stacks.items():
                stack.start(workers=1)
                parents[name] = stack.client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
                run_jobs(stack, parents[name], args.warmup)
            for run in range(args.runs):
                for name in ("embedded", "postgres") if run % 2 == 0 else ("postgres", "embedded"):
                    samples = run_jobs(stacks[name], parents[name], args.jobs)
                    per_run[name].append({measure: summarise_ms(values) for measure, values in samples.items()})
        finally:
            for stack in stacks.values():
                stack.stop()
            cleanup()
    results: dict = {
        "runs": args.runs,
        "jobs_per_run": args.jobs,
        "warmup": args.warmup,
        "workers": 1,
        "network": "8-64-64-4 synthetic, dynamic PTQ, 1000 states",
    }
    for name, runs in per_run.items():
        results[name] = {
            measure: {
                "median_ms": statistics.median(run[measure]["median_ms"] for run in runs),
                "p95_ms": statistics.median(run[measure]["p95_ms"] for run in runs),
                "run_medians_ms": [run[measure]["median_ms"] for run in runs],
            }
            for measure in ("post", "post_to_finished", "post_to_seen")
        }
    write_result("ptq_job", results)


if __name__ == "__main__":
    main()
