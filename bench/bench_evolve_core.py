"""Evolve against search: recombination across generations vs the one-shot grid, on the same parents and states.

Writes ``bench/results/evolve_core.json``. Run from the repository root:
``.venv/bin/python -m bench.bench_evolve_core``. One intra-op thread, serial, in one process.

Parents are students of different teachers: the seeded 8-64-4 teachers
paired (0, 1), (2, 3), (4, 5), each distilled with the service's defaults on
5000 states of seed 42 for 25 epochs at batch 64 (``tests/core/baseline.py``'s
recipe). For every pair and every seed in ``SEEDS`` both methods get the same
two parents as founders/parents, fitness/primary metric ``min(agreement with
A, with B)``, and the same train, selection and evaluation states (1000 each,
``search_states`` of that seed): they fine-tune on the first, choose on the
second and are reported on the third.

- ``search``: preset ``default`` (14 trials, fine-tuned toward both parents);
  its winner is the best child by selection primary metric.
- ``evolve``: population 8, 4 generations, every other setting the default.
- ``evolve_equal_budget``: the same with each child's fine-tune epochs raised
  so the total comes as close to the search's as it can without passing it
  (``floor(search epochs / children)``).
- ``variants``: evolve with one setting changed at a time (the alternatives
  the defaults were chosen against), same runs.

``diagnostics`` pools, over the default evolve runs, how each member of the
final generation leans (agreement with A minus with B) on the train,
selection and evaluation states, how far winners' selection figures overstate
their reported ones, and the best figure and diversity per generation.

Each row records the winner's primary metric on the evaluation states, its
share of the bound ``(1 + AB) / 2`` (AB measured on the evaluation states),
its selection figure, the fine-tune epochs spent and the wall time; the
summary gives, per method, the mean and the paired difference from the
search with its standard error over the runs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch

from bench.common import write_result
from core.artifacts import Checkpoint, float_checkpoint
from core.distill import DistillConfig, distill
from core.evolve import EvolutionRun, EvolveConfig, q_values, run_evolution
from core.metrics import action_agreement
from core.networks import QNetworkArch, init_network
from core.search import SearchConfig, leaderboard, parent_baselines, run_search, search_states
from core.states import SyntheticStates, synthetic_states

PAIRS = ((0, 1), (2, 3), (4, 5))
SEEDS = (0, 1, 2, 3, 4, 5)
N_STATES = 1000
EVOLVE = EvolveConfig(population_size=8, generations=4)
MEDIUM = "finetune_regime medium (10 epochs, lr 5e-4)"
VARIANTS = {
    MEDIUM: {"finetune_regime": "medium"},
    "finetune_regime short (5 epochs, lr 1e-3)": {"finetune_regime": "short"},
    "mutation_sigma 0": {"mutation_sigma": 0.0},
    "mutation_sigma 0.03": {"mutation_sigma": 0.03},
    "crossover_modes weighted only": {"crossover_modes": ("weighted",)},
    "crossover_modes aligned only": {"crossover_modes": ("aligned",)},
    "tournament_size 2": {"tournament_size": 2},
    "elite 1": {"elite": 1},
    "population_size 10": {"population_size": 10},
    "generations 5": {"generations": 5},
}
BASELINE_DISTILL = DistillConfig(epochs=25, batch_size=64)


def student(teacher_seed: int) -> Checkpoint:
    teacher = float_checkpoint(init_network(QNetworkArch(), teacher_seed).state_dict())
    return distill(teacher, synthetic_states(SyntheticStates(5000, 42), 8), BASELINE_DISTILL).student


def evolve_row(run: EvolutionRun, bound: float) -> dict:
    best = run.best
    return {
        "primary": best.score.report,
        "bound_fraction": best.score.report / bound,
        "selection_primary": best.score.selection,
        "winner": best.member_id,
        "finetune_epochs": run.finetune_epochs,
        "wall_s": run.elapsed_s,
        "best_per_generation": [generation.best.score.report for generation in run.generations],
        "diversity_per_generation": run.diversities,
    }


def leans(run: EvolutionRun, parent_a: Checkpoint, parent_b: Checkpoint) -> dict[str, dict[str, float]]:
    """Per member of the final generation (by member id), agreement with A minus with B on each state set."""
    by_member: dict[str, dict[str, float]] = {}
    for name in ("train", "selection", "evaluation"):
        states = torch.from_numpy(getattr(run.states, name))
        q_a, q_b = q_values(parent_a, states), q_values(parent_b, states)
        for member in run.generations[-1].members:
            q_member = q_values(member.checkpoint, states)
            by_member.setdefault(member.member_id, {})[name] = action_agreement(q_a, q_member) - action_agreement(
                q_b, q_member
            )
    return by_member


def compare(parent_a: Checkpoint, parent_b: Checkpoint, seed: int) -> dict:
    search_config = SearchConfig(seed=seed)
    states = search_states(search_config, 8, N_STATES)
    baselines = parent_baselines(parent_a, parent_b, states)
    parents_agreement = baselines[0]["primary_metric"]
    bound = (1.0 + parents_agreement) / 2.0

    started = time.perf_counter()
    search = run_search(parent_a, parent_b, search_config, states)
    search_wall = time.perf_counter() - started
    best = next(row for row in leaderboard(search.results, baselines) if not row["is_parent_baseline"])
    search_row = {
        "primary": best["primary_metric"],
        "bound_fraction": best["primary_metric"] / bound,
        "selection_primary": best["selection_primary_metric"],
        "winner": best["trial_id"],
        "finetune_epochs": search.finetune_epochs,
        "wall_s": search_wall,
    }
    evolve_config = dataclasses.replace(EVOLVE, seed=seed)
    evolve_run = run_evolution([parent_a, parent_b], evolve_config, states)
    evolve = {**evolve_row(evolve_run, bound), "final_generation_leans": leans(evolve_run, parent_a, parent_b)}
    children = evolve_config.generations * (evolve_config.population_size - evolve_config.elite)
    equal_config = dataclasses.replace(evolve_config, finetune_epochs=search.finetune_epochs // children)
    equal = evolve_row(run_evolution([parent_a, parent_b], equal_config, states), bound)
    variants = {
        name: evolve_row(
            run_evolution([parent_a, parent_b], dataclasses.replace(evolve_config, **fields), states), bound
        )
        for name, fields in VARIANTS.items()
    }
    return {
        "seed": seed,
        "parents_agreement": parents_agreement,
        "bound": bound,
        "search": search_row,
        "evolve": evolve,
        "evolve_equal_budget": {**equal, "epochs_per_child": equal_config.finetune_epochs},
        "variants": variants,
    }


def method_summary(rows: list[dict], method: Callable[[dict], dict]) -> dict:
    """Mean figures of one method over the runs, and its paired difference from the search."""
    differences = [method(row)["primary"] - row["search"]["primary"] for row in rows]
    return {
        "mean_primary": statistics.fmean(method(row)["primary"] for row in rows),
        "min_primary": min(method(row)["primary"] for row in rows),
        "mean_bound_fraction": statistics.fmean(method(row)["bound_fraction"] for row in rows),
        "mean_finetune_epochs": statistics.fmean(method(row)["finetune_epochs"] for row in rows),
        "median_wall_s": statistics.median(method(row)["wall_s"] for row in rows),
        "mean_minus_search": statistics.fmean(differences),
        "minus_search_standard_error": statistics.stdev(differences) / len(differences) ** 0.5,
        "worst_minus_search": min(differences),
        "runs_at_least_search": sum(difference >= 0 for difference in differences),
        "runs": len(differences),
    }


def per_generation_mean(series: Iterable[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*series)]


def diagnostics(rows: list[dict]) -> dict:
    """Where the winner's figure goes between selection and report, pooled over the runs.

    A member's lean is its agreement with A minus with B; the correlations
    pool every child in the final generation of every default run.
    """
    # Founders lean by far more than any child would; they are left out of the pool.
    members = [
        lean
        for row in rows
        for member, lean in row["evolve"]["final_generation_leans"].items()
        if not member.startswith("g0-")
    ]
    leans_by_set = {name: [member[name] for member in members] for name in ("train", "selection", "evaluation")}
    winner_leans = [row["evolve"]["final_generation_leans"][row["evolve"]["winner"]] for row in rows]
    return {
        "lean_correlation_train_vs_evaluation": float(
            np.corrcoef(leans_by_set["train"], leans_by_set["evaluation"])[0, 1]
        ),
        "lean_correlation_selection_vs_evaluation": float(
            np.corrcoef(leans_by_set["selection"], leans_by_set["evaluation"])[0, 1]
        ),
        "winner_abs_lean_selection_mean": statistics.fmean(abs(lean["selection"]) for lean in winner_leans),
        "winner_abs_lean_evaluation_mean": statistics.fmean(abs(lean["evaluation"]) for lean in winner_leans),
        "winner_abs_lean_evaluation_max": max(abs(lean["evaluation"]) for lean in winner_leans),
        "winner_selection_minus_report": {
            method: statistics.fmean(row[method]["selection_primary"] - row[method]["primary"] for row in rows)
            for method in ("search", "evolve")
        },
        "evolve_best_per_generation_mean": per_generation_mean(row["evolve"]["best_per_generation"] for row in rows),
        "evolve_diversity_per_generation_mean": per_generation_mean(
            row["evolve"]["diversity_per_generation"] for row in rows
        ),
        "medium_best_per_generation_mean": per_generation_mean(
            row["variants"][MEDIUM]["best_per_generation"] for row in rows
        ),
    }


def main() -> dict:
    torch.set_num_threads(1)
    per_pair = []
    for teacher_a, teacher_b in PAIRS:
        parent_a, parent_b = student(teacher_a), student(teacher_b)
        rows = [compare(parent_a, parent_b, seed) for seed in SEEDS]
        per_pair.append({"pair": [teacher_a, teacher_b], "per_seed": rows})
    rows = [row for pair in per_pair for row in pair["per_seed"]]
    return {
        "evolve_config": dataclasses.asdict(EVOLVE),
        "seeds": list(SEEDS),
        "search_preset": "default",
        "n_states": {"train": N_STATES, "selection": N_STATES, "evaluation": N_STATES},
        "parents": "students of teachers (0, 1), (2, 3), (4, 5): distill defaults, 5000 states seed 42, 25 epochs, batch 64",
        "conditions": "one torch thread, serial in one process; wall times on a shared 2-core machine are noisy",
        "summary": {
            "search": method_summary(rows, lambda row: row["search"]),
            "evolve": method_summary(rows, lambda row: row["evolve"]),
            "evolve_equal_budget": method_summary(rows, lambda row: row["evolve_equal_budget"]),
            "variants": {name: method_summary(rows, lambda row, name=name: row["variants"][name]) for name in VARIANTS},
            "diagnostics": diagnostics(rows),
        },
        "per_pair": per_pair,
    }


if __name__ == "__main__":
    write_result("evolve_core", main())
