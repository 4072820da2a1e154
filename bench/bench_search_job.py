"""Search and pipeline wall time through the real service: POST to `succeeded`, 1 and 2 workers interleaved.

The `minimal` search (9 trials) on the baseline students with 1000 states,
on the Redis + PostgreSQL stack with two warm workers. Runs alternate
between one worker and two: the second worker's consumer is cancelled and
re-added over Celery's remote control, so both configurations run on the
same warm processes, minutes apart rather than a whole benchmark apart (on a
shared 2-core machine the load drifts). A run's time is from the client's
POST to the job's ``finished_at`` (the same machine's clock), so the client
polls only every 0.2 s: polling faster would take CPU from the workers it
measures. The speed-up is the median of the per-pair ratios. Then the
pipeline's wall time at 2 workers. Writes bench/results/search_job.json.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from app.service.queue import make_celery
from bench.common import write_result
from tests.integration.stack import Stack, postgres_stack

POLL_INTERVAL_S = 0.2
BASELINE_DISTILL = {"epochs": 25, "batch_size": 64, "lr": 1e-3, "states": {"synthetic": {"n_states": 5000, "seed": 42}}}


def submit_and_wait(stack: Stack, kind: str, body: dict, timeout: float = 300.0) -> tuple[dict, float]:
    """The finished job, and seconds from its POST to its ``finished_at``."""
    started, wall_started = time.perf_counter(), time.time()
    job = stack.client.post(f"/jobs/{kind}", json=body).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(POLL_INTERVAL_S)
        job = stack.client.get(f"/jobs/{job['id']}").json()
        if time.perf_counter() - started > timeout:
            raise TimeoutError(kind)
    assert job["status"] == "succeeded", job["error"]
    return job, datetime.fromisoformat(job["finished_at"]).timestamp() - wall_started


class SecondWorker:
    """Switches the second worker's consumer off and on, so one stack measures both configurations."""

    def __init__(self, stack: Stack) -> None:
        argv = stack.processes["worker2"].args
        self.hostname = f"{argv[argv.index('--name') + 1]}@{socket.gethostname()}"
        self.queue = stack.settings.queue
        self.control = make_celery(stack.settings).control

    def set(self, consuming: bool) -> None:
        command = self.control.add_consumer if consuming else self.control.cancel_consumer
        replies = command(self.queue, destination=[self.hostname], reply=True, timeout=10)
        assert replies, f"{self.hostname} did not answer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs, one with 1 worker and one with 2")
    args = parser.parse_args()
    runs: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as root:
        stack, cleanup = postgres_stack(Path(root))
        try:
            stack.start(workers=2)
            students = []
            for seed in (0, 1):
                teacher = stack.client.post("/checkpoints/synthetic", json={"seed": seed}).json()["id"]
                job, _ = submit_and_wait(stack, "distill", {"teacher_id": teacher, **BASELINE_DISTILL})
                students.append(job["output_checkpoint_ids"][0])
            search_body = {
                "parent_a_id": students[0],
                "parent_b_id": students[1],
                "preset": "minimal",
                "n_states": 1000,
            }
            submit_and_wait(stack, "search", search_body)  # warm every worker's imports and caches
            second = SecondWorker(stack)
            for repeat in range(args.repeats):
                for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                    second.set(consuming=workers == 2)
                    time.sleep(0.5)
                    runs[workers].append(submit_and_wait(stack, "search", search_body)[1])
            second.set(consuming=True)
            pipeline_s = [
                submit_and_wait(stack, "pipeline", {"parent_seeds": [0, 1]})[1]
                for _ in range(max(1, args.repeats // 2))
            ]
        finally:
            stack.stop()
            cleanup()
    ratios = [one / two for one, two in zip(runs[1], runs[2])]
    by_workers = {
        str(workers): {"minimal_search_s": {"median": statistics.median(seconds), "min": min(seconds), "runs": seconds}}
        for workers, seconds in runs.items()
    }
    by_workers["2"]["pipeline_s"] = {"median": statistics.median(pipeline_s), "runs": pipeline_s}
    write_result(
        "search_job",
        {
            "stack": "postgres+redis, 2 warm workers, the second switched off for the 1-worker runs",
            "search": "minimal preset, 9 trials, 1000 states",
            "repeats": args.repeats,
            "by_workers": by_workers,
            "speedup_1_to_2_workers": statistics.median(ratios),
            "speedup_per_pair": ratios,
        },
    )


if __name__ == "__main__":
    main()
