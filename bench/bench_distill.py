"""Distillation benchmark: the baseline student on one thread, and its held-out quality.

Writes ``bench/results/distill.json``. Run from the repository root:
``.venv/bin/python bench/bench_distill.py``.

Baseline: 8-64-4 teacher from ``init_network(QNetworkArch(), 0)``, 5000
synthetic states (seed 42), T 3, alpha 1, 25 epochs, lr 1e-3, batch 64, 10 %
validation (1,775 optimizer steps), the default (shared) init and optimiser.
Times exclude imports and are the median
of ``RUNS`` runs of ``core.distill.distill`` (teacher forward, training,
per-epoch validation, checkpoint), as wall time and as this process's CPU
time (the less noisy figure on a shared machine). Quality is reported for
both teachers with each init; what the init does to the children is
measured in ``bench/bench_recombination.py``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import_started = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result  # noqa: E402
from core.artifacts import float_checkpoint  # noqa: E402
from core.distill import DistillConfig, distill  # noqa: E402
from core.metrics import action_agreement, peak_rss_bytes, prob_similarity  # noqa: E402
from core.networks import QNetworkArch, functional_forward, init_network  # noqa: E402
from core.states import SyntheticStates, synthetic_states  # noqa: E402

import_seconds = time.perf_counter() - import_started
RUNS = 7
BASELINE = DistillConfig(epochs=25, batch_size=64)
REFERENCE_SECONDS = 2.7


def main() -> dict:
    torch.set_num_threads(1)
    states = synthetic_states(SyntheticStates(5000, 42), 8)
    fresh_states = torch.from_numpy(synthetic_states(SyntheticStates(5000, 7), 8))
    teachers = {seed: float_checkpoint(init_network(QNetworkArch(), seed).state_dict()) for seed in (0, 1)}
    n_train = len(states) - max(1, int(len(states) * BASELINE.val_fraction))
    steps = BASELINE.epochs * math.ceil(n_train / BASELINE.batch_size)

    distill(teachers[0], states, BASELINE)  # warm-up: first-call allocations and dispatch caches
    wall, cpu, train_wall = [], [], []
    for _ in range(RUNS):
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        result = distill(teachers[0], states, BASELINE)
        wall.append(time.perf_counter() - wall_started)
        cpu.append(time.process_time() - cpu_started)
        train_wall.append(result.elapsed_seconds)

    quality: dict[str, dict] = {"shared_init": {}, "teacher_init": {}, "random_init": {}}
    for init, figures in quality.items():
        config = dataclasses.replace(BASELINE, init=init.removesuffix("_init"))
        for seed, teacher in teachers.items():
            result = distill(teacher, states, config)
            with torch.inference_mode():
                teacher_q = functional_forward(teacher.arch, teacher.tensors, fresh_states)
                student_q = functional_forward(result.student.arch, result.student.tensors, fresh_states)
            figures[f"teacher_seed_{seed}"] = {
                "initial_val_action_agreement": result.initial.action_agreement,
                "val_action_agreement": result.final.action_agreement,
                "val_prob_similarity_t3": result.final.prob_similarity,
                "fresh_action_agreement": action_agreement(teacher_q, student_q),
                "fresh_prob_similarity_t3": prob_similarity(teacher_q, student_q, BASELINE.temperature),
                "best_epoch": result.best_epoch,
            }

    median_cpu = statistics.median(cpu)
    return {
        "baseline": {
            "teacher": "8-64-64-4",
            "student": "8-32-32-4",
            "n_states": 5000,
            "epochs": 25,
            "batch_size": 64,
            "lr": BASELINE.lr,
            "adam_betas": list(BASELINE.adam_betas),
            "ema_decay": BASELINE.ema_decay,
            "temperature": 3.0,
            "init": BASELINE.init,
            "optimizer_steps": steps,
        },
        "runs": RUNS,
        "distill_wall_seconds_median": statistics.median(wall),
        "distill_wall_seconds_min": min(wall),
        "distill_cpu_seconds_median": median_cpu,
        "train_wall_seconds_median": statistics.median(train_wall),
        "microseconds_per_step_cpu": median_cpu / steps * 1e6,  # whole distillation CPU time / optimizer steps
        "reference_seconds": REFERENCE_SECONDS,
        "import_seconds": import_seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "quality": quality,
    }


if __name__ == "__main__":
    result = main()
    write_result("distill", result)
