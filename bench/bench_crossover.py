"""Crossover and fine-tune benchmark: speed per mode, and how well merged children keep both parents.

Writes ``bench/results/crossover.json``. Run from the repository root:
``.venv/bin/python bench/bench_crossover.py``. One intra-op thread, as workers run.

Quality is ``min(agree_A, agree_B)``: top-1 agreement of the child with each
parent on 2000 held-out states (seed 7), the parents having been trained, and
the alignment measured, on 5000 other states (seed 42).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts import Checkpoint, float_checkpoint  # noqa: E402
from core.crossover import CrossoverConfig, crossover  # noqa: E402
from core.finetune import FinetuneConfig, finetune  # noqa: E402
from core.metrics import action_agreement  # noqa: E402
from core.networks import QNetworkArch, functional_forward, init_network, student_arch  # noqa: E402
from core.states import SyntheticStates, synthetic_states  # noqa: E402
from core.training import TeacherTarget, TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "crossover.json"
TEACHER_ARCH = QNetworkArch(input_dim=8, hidden_size=64, output_dim=4)
SEED_PAIRS = ((1, 2), (3, 4), (5, 6))
MERGES = {
    "weighted": CrossoverConfig(mode="weighted", alpha=0.5),
    "aligned_activations_repair": CrossoverConfig(mode="aligned", alpha=0.5),
    "aligned_activations": CrossoverConfig(mode="aligned", alpha=0.5, repair_layernorm=False),
    "aligned_weights": CrossoverConfig(mode="aligned", alpha=0.5, align_by="weights", repair_layernorm=False),
}


def trained(teacher: Checkpoint, arch: QNetworkArch, states: torch.Tensor, seed: int) -> Checkpoint:
    """The baseline distillation recipe: 25 epochs, batch 64, lr 1e-3, soft KL at T 3."""
    teacher_q = functional_forward(teacher.arch, teacher.tensors, states)
    result = train(
        arch,
        init_network(arch, seed).state_dict(),
        states,
        [TeacherTarget(teacher_q)],
        TrainConfig(epochs=25, lr=1e-3, batch_size=64, seed=seed),
    )
    return float_checkpoint(result.state_dict, arch)


def teacher(seed: int) -> Checkpoint:
    return float_checkpoint(init_network(TEACHER_ARCH, seed).state_dict(), TEACHER_ARCH)


def median_us(run, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        run()
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1e3


def min_agreement(child: Checkpoint, parent_a: Checkpoint, parent_b: Checkpoint, states: torch.Tensor) -> dict:
    child_q = functional_forward(child.arch, child.tensors, states)
    agree_a = action_agreement(functional_forward(parent_a.arch, parent_a.tensors, states), child_q)
    agree_b = action_agreement(functional_forward(parent_b.arch, parent_b.tensors, states), child_q)
    return {"agree_a": agree_a, "agree_b": agree_b, "min": min(agree_a, agree_b)}


def quality(scenario: str, train_states: torch.Tensor, eval_states: torch.Tensor) -> dict:
    runs = []
    for seed_a, seed_b in SEED_PAIRS:
        if scenario == "students_same_teacher":
            parent_a = trained(teacher(0), student_arch(TEACHER_ARCH), train_states, seed_a)
            parent_b = trained(teacher(0), student_arch(TEACHER_ARCH), train_states, seed_b)
        elif scenario == "students_different_teachers":
            parent_a = trained(teacher(0), student_arch(TEACHER_ARCH), train_states, seed_a)
            parent_b = trained(teacher(1), student_arch(TEACHER_ARCH), train_states, seed_b)
        else:
            parent_a = trained(teacher(0), TEACHER_ARCH, train_states, seed_a)
            parent_b = trained(teacher(0), TEACHER_ARCH, train_states, seed_b)
        parents_q = [functional_forward(parent.arch, parent.tensors, eval_states) for parent in (parent_a, parent_b)]
        run = {"seeds": [seed_a, seed_b], "parent_agreement": action_agreement(*parents_q)}
        for name, config in MERGES.items():
            child = crossover(parent_a, parent_b, config, train_states).child
            run[name] = min_agreement(child, parent_a, parent_b, eval_states)
            if name in ("weighted", "aligned_activations_repair"):
                for tune_name, tune in (
                    ("medium_toward_a", FinetuneConfig(regime="medium")),
                    ("medium_dual_0.5", FinetuneConfig(regime="medium", teacher_weight_a=0.5)),
                ):
                    tuned = finetune(child, parent_a, train_states, tune, reference_b=parent_b).child
                    run[f"{name}+{tune_name}"] = min_agreement(tuned, parent_a, parent_b, eval_states)
        runs.append(run)
    keys = [key for key in runs[0] if key not in ("seeds", "parent_agreement")]
    return {
        "mean_parent_agreement": statistics.mean(run["parent_agreement"] for run in runs),
        "mean_min_agreement": {key: statistics.mean(run[key]["min"] for run in runs) for key in keys},
        "runs": runs,
    }


def main() -> None:
    torch.set_num_threads(1)
    train_states = torch.from_numpy(synthetic_states(SyntheticStates(n_states=5000, seed=42), 8))
    eval_states = torch.from_numpy(synthetic_states(SyntheticStates(n_states=2000, seed=7), 8))

    parent_a, parent_b = teacher(0), teacher(1)
    timing_states = {"aligned_activations_repair": 5000, "aligned_activations": 5000, "aligned_weights": 0}
    crossover_us = {
        mode: median_us(lambda config=CrossoverConfig(mode=mode): crossover(parent_a, parent_b, config), repeats=2000)
        for mode in ("random", "layer", "weighted")
    }
    crossover_us["random_layer_granularity"] = median_us(
        lambda: crossover(parent_a, parent_b, CrossoverConfig(mode="random", granularity="layer")), repeats=2000
    )
    for name, n_states in timing_states.items():
        states = train_states[:n_states] if n_states else None
        crossover_us[f"{name}_{n_states}_states"] = median_us(
            lambda config=MERGES[name], states=states: crossover(parent_a, parent_b, config, states), repeats=50
        )
    crossover_us["aligned_activations_1000_states"] = median_us(
        lambda: crossover(parent_a, parent_b, MERGES["aligned_activations"], train_states[:1000]), repeats=50
    )

    student_a = trained(teacher(0), student_arch(TEACHER_ARCH), train_states, 0)
    student_b = trained(teacher(1), student_arch(TEACHER_ARCH), train_states, 1)
    child = crossover(student_a, student_b, CrossoverConfig()).child
    finetune_seconds = [
        finetune(child, student_a, train_states, FinetuneConfig(regime="medium")).elapsed_seconds for _ in range(5)
    ]
    tuned = finetune(child, student_a, train_states, FinetuneConfig(regime="medium")).child
    tuned_reference_dropout = finetune(
        child, student_a, train_states, FinetuneConfig(regime="medium", dropout_rate=None)
    ).child

    def agree_with_a(model: Checkpoint) -> float:
        return action_agreement(
            functional_forward(student_a.arch, student_a.tensors, eval_states),
            functional_forward(model.arch, model.tensors, eval_states),
        )

    report = {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "crossover_median_us_8_64_4": crossover_us,
        "finetune_medium_5000_states": {
            "loop_seconds_median": statistics.median(finetune_seconds),
            "loop_seconds_all": finetune_seconds,
            "heldout_agreement_with_a_before": agree_with_a(child),
            "heldout_agreement_with_a_after": agree_with_a(tuned),
            "heldout_agreement_with_a_after_with_child_dropout": agree_with_a(tuned_reference_dropout),
            "students": "8-32-32-4, teachers init seeds 0/1, student seeds 0/1, 25 epochs batch 64 lr 1e-3; weighted alpha 0.5 child",
        },
        "quality_min_agreement": {
            scenario: quality(scenario, train_states, eval_states)
            for scenario in ("students_same_teacher", "students_different_teachers", "parents_64_same_function")
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
