"""Wall time of an evolve generation through the real service, 1 worker against 2, runs interleaved.

An evolution of two baseline students (teachers 0 and 1), population 8,
elite 2 (six children per generation), the default fine-tune, on 1000
states (the default; the figure) and on 5000 (more work per child), on the
Redis + PostgreSQL stack with two warm workers; the second worker's
consumer is switched off for the 1-worker runs (as in ``bench_search_job``),
so both configurations run on the same warm processes minutes apart. A
generation's wall time is read from the children's timestamps: from the
moment the previous generation was done (its last child's ``finished_at``;
for generation 1, the first child's ``created_at``) to its own last child's
``finished_at``, so it includes the evolve job's wake-up and planning
between generations; the evolve job's own step and each child's run time are
recorded beside it. The figure is the median over every generation of every
run; the ratio is 2 workers over 1 (target at most 0.65). The machine's load
average before and after goes into the result: on a shared 2-core machine it
decides how much a second worker can add. Writes bench/results/evolve_workers.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.bench_search_job import BASELINE_DISTILL, SecondWorker, submit_and_wait
from bench.common import write_result
from tests.integration.stack import Stack, postgres_stack

EVOLUTION = {"population_size": 8, "elite": 2, "generations": 3}
# The default (1000) first, whose ratio is the figure; 5000 makes each child about five times the work.
N_STATES = (1000, 5000)
TARGET_RATIO = 0.65


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def generation_times(stack: Stack, job_id: str) -> dict[str, list[float]]:
    """Per generation: its wall time, its children's median run time, and the evolve job's step before it.

    ``wall_s`` runs from the previous generation's last ``finished_at`` (generation
    1: its first child's ``created_at``) to its own last ``finished_at``;
    ``step_s`` from the previous generation's last ``finished_at`` to this one's
    first ``created_at`` (the evolve job's wake-up, replay and planning; none
    before generation 1); ``child_s`` is the median of ``finished_at - started_at``.
    """
    page = stack.client.get("/jobs", params={"parent_job_id": job_id, "limit": 500}).json()
    by_generation: dict[int, list[dict]] = {}
    for child in page["items"]:
        by_generation.setdefault(child["params"]["child"]["generation"], []).append(child)
    previous_done = None
    times: dict[str, list[float]] = {"wall_s": [], "step_s": [], "child_s": []}
    for index in sorted(by_generation):
        children = by_generation[index]
        created = min(timestamp(child["created_at"]) for child in children)
        done = max(timestamp(child["finished_at"]) for child in children)
        times["wall_s"].append(done - (created if previous_done is None else previous_done))
        if previous_done is not None:
            times["step_s"].append(created - previous_done)
        times["child_s"].append(
            statistics.median(timestamp(child["finished_at"]) - timestamp(child["started_at"]) for child in children)
        )
        previous_done = done
    return times


def measure(stack: Stack, second: SecondWorker, students: list[str], n_states: int, repeats: int) -> dict:
    """Interleaved 1- and 2-worker runs of one workload; medians over every generation of every run."""
    body = {"population": students, "n_states": n_states, **EVOLUTION}
    submit_and_wait(stack, "evolve", {**body, "generations": 1})  # warm both workers' imports and caches
    runs: dict[int, list[dict[str, list[float]]]] = {1: [], 2: []}
    for repeat in range(repeats):
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            second.set(consuming=workers == 2)
            time.sleep(0.5)
            # A new seed per pair: fresh children every run, the same evolution for both worker counts.
            job, _ = submit_and_wait(stack, "evolve", {**body, "seed": repeat})
            runs[workers].append(generation_times(stack, job["id"]))
    second.set(consuming=True)
    by_workers = {
        str(workers): {
            figure: {
                "median": statistics.median(value for run in measured for value in run[figure]),
                "runs": [run[figure] for run in measured],
            }
            for figure in ("wall_s", "step_s", "child_s")
        }
        for workers, measured in runs.items()
    }
    ratio = by_workers["2"]["wall_s"]["median"] / by_workers["1"]["wall_s"]["median"]
    return {
        "n_states": n_states,
        "by_workers": by_workers,
        "ratio_2_to_1_workers": ratio,
        "meets_target": ratio <= TARGET_RATIO,
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs, one with 1 worker and one with 2")
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as root:
        stack, cleanup = postgres_stack(Path(root))
        try:
            stack.start(workers=2)
            students = []
            for seed in (0, 1):
                teacher = stack.client.post("/checkpoints/synthetic", json={"seed": seed}).json()["id"]
                job, _ = submit_and_wait(stack, "distill", {"teacher_id": teacher, **BASELINE_DISTILL})
                students.append(job["output_checkpoint_ids"][0])
            second = SecondWorker(stack)
            workloads = {
                f"{n_states} states": measure(stack, second, students, n_states, args.repeats) for n_states in N_STATES
            }
        finally:
            stack.stop()
            cleanup()
    default = workloads[f"{N_STATES[0]} states"]
    write_result(
        "evolve_workers",
        {
            "stack": "postgres+redis, 2 warm workers, the second switched off for the 1-worker runs",
            "evolution": f"two students (teachers 0, 1); {EVOLUTION}, default fine-tune (lr_high)",
            "repeats": args.repeats,
            "workloads": workloads,
            "ratio_2_to_1_workers": default["ratio_2_to_1_workers"],
            "target_ratio": TARGET_RATIO,
            "meets_target": default["meets_target"],
            "load_average_1_5_15_min": {"before": load_before, "after": load_average()},
        },
    )


if __name__ == "__main__":
    main()
