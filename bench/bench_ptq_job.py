"""End-to-end PTQ job latency: POST /jobs/ptq to `succeeded`, with warm workers.

Runs the real API and one worker as subprocesses on each stack (embedded, and
Redis + PostgreSQL when reachable) and submits jobs one after another on a
synthetic 8-64-4 parent. Writes bench/results/ptq_job.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import summarise_ms, write_result
from tests.integration.stack import Stack, embedded_stack, postgres_stack

POLL_INTERVAL_S = 0.002


def measure(stack: Stack, jobs: int, warmup: int) -> dict:
    client = stack.client
    parent_id = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
    post_s, end_to_end_s = [], []
    for index in range(warmup + jobs):
        started = time.perf_counter()
        job = client.post("/jobs/ptq", json={"checkpoint_id": parent_id}).json()
        posted = time.perf_counter()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(POLL_INTERVAL_S)
            job = client.get(f"/jobs/{job['id']}").json()
        finished = time.perf_counter()
        assert job["status"] == "succeeded", job["error"]
        if index >= warmup:
            post_s.append(posted - started)
            end_to_end_s.append(finished - started)
    return {"post_to_succeeded": summarise_ms(end_to_end_s), "post_only": summarise_ms(post_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    results = {"jobs": args.jobs, "warmup": args.warmup, "workers": 1, "network": "8-64-64-4 synthetic, dynamic PTQ, 1000 states"}
    with tempfile.TemporaryDirectory() as root:
        for name in ("embedded", "postgres"):
            cleanup = None
            if name == "embedded":
                stack = embedded_stack(Path(root) / name)
            else:
                stack, cleanup = postgres_stack(Path(root) / name)
            (Path(root) / name).mkdir(parents=True, exist_ok=True)
            try:
                stack.start(workers=1)
                results[name] = measure(stack, args.jobs, args.warmup)
            finally:
                stack.stop()
                if cleanup:
                    cleanup()
    write_result("ptq_job", results)


if __name__ == "__main__":
    main()
