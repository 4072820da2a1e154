"""Does the child keep what its parents knew? Every default of the recombination path measured end to end.

Writes ``bench/results/recombination.json``. Run from the repository root:
``.venv/bin/python -m bench.bench_recombination``.

Teachers are the seeded 8-64-4 networks 0-5, paired (0, 1), (2, 3), (4, 5);
students are distilled on 5000 states of seed 42 for 25 epochs at batch 64
(the baseline's), every other setting as the row says; each row is repeated
for distillation seeds 0, 1 and 2. Every figure is measured on two sets of
2000 fresh states (seeds 2024 and 777) that nothing was trained or selected
on.

- ``runbook``: weighted crossover at 0.5, then the reference's ``medium``
  regime (10 epochs, lr 5e-4, batch 32) toward A. Students' agreement with
  their teachers and the child's agreement with A, per row of alternatives.
- ``dual``: the same students, crossed over and fine-tuned toward both
  within ``medium``; ``min(agreement with A, with B)`` as a fraction of the
  bound ``(1 + AB) / 2`` and the oracle agreement.
- ``qat``: per teacher and seed, agreement with the teacher of the float
  student, dynamic PTQ, QAT (5 epochs) and its fair control (the same 5
  epochs without fake quantization, then PTQ).
- ``determinism``: a distillation's checksum and time at 1, 2 and 4 torch
  threads, and the time the training loop would take unpinned.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from bench.common import write_result
from core.artifacts import Checkpoint, encode, float_checkpoint, sha256_hex
from core.crossover import CrossoverConfig, crossover
from core.distill import DistillConfig, distill
from core.finetune import FinetuneConfig, finetune
from core.metrics import action_agreement, oracle_agreement
from core.networks import QNetworkArch, init_network, init_params
from core.qat import QATConfig, qat
from core.quantize import inference_forward, quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, train

PAIRS = ((0, 1), (2, 3), (4, 5))
SEEDS = (0, 1, 2)
TRAIN = torch.from_numpy(synthetic_states(SyntheticStates(5000, 42), 8))
FRESH = tuple(torch.from_numpy(synthetic_states(SyntheticStates(2000, seed), 8)) for seed in (2024, 777))
REFERENCE_ADAM = (0.9, 0.999)
# The reference's recipe: an unseeded random init per student (here two seeds), lr 1e-3, plain Adam, no averaging.
REFERENCE_DISTILL = {"init": "random", "lr": 1e-3, "adam_betas": REFERENCE_ADAM, "ema_decay": None}
REFERENCE_FINETUNE = {"adam_betas": REFERENCE_ADAM}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One row: how students are distilled, crossed over and fine-tuned."""

    label: str
    distill: dict
    finetune: dict
    crossover: CrossoverConfig = CrossoverConfig(mode="weighted", alpha=0.5)
    independent_inits: bool = False


RUNBOOK = (
    Recipe(
        "reference: random init per student, lr 1e-3, Adam 0.999",
        REFERENCE_DISTILL,
        REFERENCE_FINETUNE,
        independent_inits=True,
    ),
    Recipe(
        "teacher-subset init (previous default), reference optimisers",
        {**REFERENCE_DISTILL, "init": "teacher"},
        REFERENCE_FINETUNE,
    ),
    Recipe("shared init, reference optimisers", {**REFERENCE_DISTILL, "init": "shared"}, REFERENCE_FINETUNE),
    Recipe("shared init, lr 3e-3, Adam 0.99, weight average; reference fine-tune", {}, REFERENCE_FINETUNE),
    Recipe("defaults: the above, fine-tune Adam 0.95", {}, {}),
    Recipe("teacher-subset init with the default optimisers", {"init": "teacher"}, {}),
    Recipe(
        "teacher-subset init, aligned crossover, default optimisers",
        {"init": "teacher"},
        {},
        CrossoverConfig(mode="aligned", alpha=0.5),
    ),
)
DUAL = (
    (
        "reference loss: T 3, unbalanced, Adam 0.999",
        CrossoverConfig(mode="weighted"),
        {"temperature": 3.0, "balance_teachers": False, "adam_betas": REFERENCE_ADAM},
    ),
    ("T 3, unbalanced", CrossoverConfig(mode="weighted"), {"temperature": 3.0, "balance_teachers": False}),
    ("T 0.5, unbalanced", CrossoverConfig(mode="weighted"), {"balance_teachers": False}),
    ("T 3, balanced", CrossoverConfig(mode="weighted"), {"temperature": 3.0}),
    ("T 1, balanced", CrossoverConfig(mode="weighted"), {"temperature": 1.0}),
    ("defaults: T 0.5, balanced", CrossoverConfig(mode="weighted"), {}),
    ("defaults, aligned crossover", CrossoverConfig(mode="aligned"), {}),
)


def teacher(seed: int) -> Checkpoint:
    return float_checkpoint(init_network(QNetworkArch(), seed).state_dict())


def q_values(checkpoint: Checkpoint, states: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return inference_forward(checkpoint)(states)


def agreement(reference: Checkpoint, query: Checkpoint) -> float:
    """Mean over both fresh sets."""
    return statistics.fmean(action_agreement(q_values(reference, states), q_values(query, states)) for states in FRESH)


def students(recipe: Recipe, seed: int) -> dict[int, Checkpoint]:
    config = DistillConfig(epochs=25, batch_size=64, seed=seed, **recipe.distill)
    # Independent inits: B's student draws its random init from another seed than A's.
    return {
        index: distill(
            teacher(index),
            TRAIN,
            dataclasses.replace(config, seed=seed + 1000 * (index % 2)) if recipe.independent_inits else config,
        ).student
        for index in range(6)
    }


def runbook_row(recipe: Recipe) -> dict:
    per_seed = []
    for seed in SEEDS:
        made = students(recipe, seed)
        children = []
        for a, b in PAIRS:
            child = crossover(made[a], made[b], recipe.crossover, TRAIN).child
            tuned = finetune(child, made[a], TRAIN, FinetuneConfig(regime="medium", **recipe.finetune)).child
            children.append(agreement(made[a], tuned))
        per_seed.append(
            {
                "seed": seed,
                "student_agreement_mean": statistics.fmean(
                    agreement(teacher(index), made[index]) for index in range(6)
                ),
                "child_agreement_with_a_mean": statistics.fmean(children),
                "child_agreement_with_a_min": min(children),
            }
        )
    return {"label": recipe.label, "per_seed": per_seed, **_means(per_seed)}


def dual_row(
    label: str, recipe: CrossoverConfig, finetune_settings: dict, made_by_seed: dict[int, dict[int, Checkpoint]]
) -> dict:
    per_seed = []
    for seed, made in made_by_seed.items():
        fractions, oracles = [], []
        for a, b in PAIRS:
            child = crossover(made[a], made[b], recipe, TRAIN).child
            config = FinetuneConfig(regime="medium", teacher_weight_a=0.5, **finetune_settings)
            tuned = finetune(child, made[a], TRAIN, config, reference_b=made[b]).child
            for states in FRESH:
                q_a, q_b, q_child = (q_values(checkpoint, states) for checkpoint in (made[a], made[b], tuned))
                bound = (1 + action_agreement(q_a, q_b)) / 2
                fractions.append(min(action_agreement(q_a, q_child), action_agreement(q_b, q_child)) / bound)
                oracles.append(oracle_agreement(q_child, q_a, q_b))
        per_seed.append(
            {
                "seed": seed,
                "bound_fraction_mean": statistics.fmean(fractions),
                "bound_fraction_min": min(fractions),
                "oracle_mean": statistics.fmean(oracles),
            }
        )
    return {"label": label, "per_seed": per_seed, **_means(per_seed)}


def qat_rows() -> list[dict]:
    rows = []
    config = QATConfig()
    for index in range(6):
        for seed in (0, 1):
            student = distill(teacher(index), TRAIN, DistillConfig(epochs=25, batch_size=64, seed=seed)).student
            with torch.no_grad():
                targets = inference_forward(teacher(index))(TRAIN)
            retrained = train(student.arch, student.tensors, TRAIN, [TeacherTarget(targets)], config.train_config())
            control = quantize_dynamic(float_checkpoint(retrained.state_dict, student.arch)).checkpoint
            qat_int8 = qat(student, teacher(index), TRAIN, config).quantized
            figures = {
                name: agreement(teacher(index), model)
                for name, model in (
                    ("float", student),
                    ("ptq", quantize_dynamic(student).checkpoint),
                    ("qat", qat_int8),
                    ("retrained_ptq", control),
                )
            }
            rows.append(
                {
                    "teacher": index,
                    "seed": seed,
                    **figures,
                    "qat_wins": figures["qat"] > max(figures["retrained_ptq"], figures["ptq"]),
                }
            )
    return rows


def determinism() -> dict:
    states = TRAIN.numpy()
    previous = torch.get_num_threads()
    by_threads = {}
    with torch.no_grad():
        targets = [TeacherTarget(inference_forward(teacher(0))(TRAIN))]
    config = DistillConfig(epochs=25, batch_size=64)
    student_arch = config.student_arch(QNetworkArch())
    start_weights = init_params(student_arch, 0)
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            started = time.perf_counter()
            digest = sha256_hex(encode(distill(teacher(0), states, config).student))
            pinned_s = time.perf_counter() - started
            # The same loop without the one-thread guard: what pinning saves or costs at this setting.
            started = time.perf_counter()
            train.__wrapped__(student_arch, start_weights, TRAIN, targets, config.train_config())
            unpinned_s = time.perf_counter() - started
            by_threads[str(threads)] = {
                "sha256": digest,
                "distill_seconds": pinned_s,
                "training_loop_seconds_unpinned": unpinned_s,
            }
    finally:
        torch.set_num_threads(previous)
    return {"by_threads": by_threads, "identical": len({row["sha256"] for row in by_threads.values()}) == 1}


def _means(per_seed: list[dict]) -> dict:
    keys = [key for key in per_seed[0] if key != "seed"]
    return {key: statistics.fmean(row[key] for row in per_seed) for key in keys} | {
        f"{key}_range": [min(row[key] for row in per_seed), max(row[key] for row in per_seed)] for key in keys
    }


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    runbook = [runbook_row(recipe) for recipe in RUNBOOK]
    made_by_seed = {seed: students(Recipe("defaults", {}, {}), seed) for seed in SEEDS}
    dual = [dual_row(label, recipe, settings, made_by_seed) for label, recipe, settings in DUAL]
    qat_table = qat_rows()
    write_result(
        "recombination",
        {
            "runbook": runbook,
            "dual": dual,
            "qat": {
                "rows": qat_table,
                "mean": {
                    name: statistics.fmean(row[name] for row in qat_table)
                    for name in ("float", "ptq", "qat", "retrained_ptq")
                },
                "qat_wins": sum(row["qat_wins"] for row in qat_table),
                "n": len(qat_table),
            },
            "determinism": determinism(),
            "seconds": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
