"""Search and pipeline wall time through the real service: POST to `succeeded`.

The `minimal` search (9 trials) on the baseline students with 1000 states,
at 1 and 2 workers on the Redis + PostgreSQL stack, and the pipeline's wall
time. Writes bench/results/search_job.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import write_result
from tests.integration.stack import Stack, postgres_stack

POLL_INTERVAL_S = 0.02
BASELINE_DISTILL = {"epochs": 25, "batch_size": 64, "lr": 1e-3, "states": {"synthetic": {"n_states": 5000, "seed": 42}}}


def submit_and_wait(stack: Stack, kind: str, body: dict, timeout: float = 300.0) -> tuple[dict, float]:
    started = time.perf_counter()
    job = stack.client.post(f"/jobs/{kind}", json=body).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        # Poll gently: on a 2-core machine a tight polling loop would take CPU from the workers it measures.
        time.sleep(POLL_INTERVAL_S)
        job = stack.client.get(f"/jobs/{job['id']}").json()
        if time.perf_counter() - started > timeout:
            raise TimeoutError(kind)
    assert job["status"] == "succeeded", job["error"]
    return job, time.perf_counter() - started


def measure(workers: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        stack, cleanup = postgres_stack(Path(root))
        try:
            stack.start(workers=workers)
            students = []
            for seed in (0, 1):
                teacher = stack.client.post("/checkpoints/synthetic", json={"seed": seed}).json()["id"]
                job, _ = submit_and_wait(stack, "distill", {"teacher_id": teacher, **BASELINE_DISTILL})
                students.append(job["output_checkpoint_ids"][0])
            search_body = {"parent_a_id": students[0], "parent_b_id": students[1], "preset": "minimal", "n_states": 1000}
            submit_and_wait(stack, "search", search_body)  # warm every worker's imports and caches
            search_s = [submit_and_wait(stack, "search", search_body)[1] for _ in range(repeats)]
            pipeline_s = [submit_and_wait(stack, "pipeline", {"parent_seeds": [0, 1]})[1] for _ in range(max(1, repeats // 2))]
        finally:
            stack.stop()
            cleanup()
    return {
        "workers": workers,
        "minimal_search_s": {"median": statistics.median(search_s), "min": min(search_s), "runs": search_s},
        "pipeline_s": {"median": statistics.median(pipeline_s), "runs": pipeline_s},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    by_workers = {str(workers): measure(workers, args.repeats) for workers in (1, 2)}
    one, two = by_workers["1"]["minimal_search_s"]["median"], by_workers["2"]["minimal_search_s"]["median"]
    write_result("search_job", {"stack": "postgres+redis", "search": "minimal preset, 9 trials, 1000 states", "by_workers": by_workers, "speedup_1_to_2_workers": one / two})


if __name__ == "__main__":
    main()
