"""Search benchmark: grid against successive halving on the ``default`` preset, in one process.

Writes ``bench/results/search_core.json``. Run from the repository root:
``.venv/bin/python bench/bench_search_core.py``. One intra-op thread, as workers run.

Parents are the baseline students (``core.distill.distill`` of teachers
``init_network(QNetworkArch(), 0)`` and ``(..., 1)`` on 5000 states of seed
42: 25 epochs, batch 64, lr 1e-3). Each search fine-tunes on 1000 states and
scores on 1000 held-out states, both derived from the search seed. For each
of ``SEARCH_SEEDS`` it records both schedulers' winner (id and primary
metric), whether halving found grid's winner, total fine-tune epochs and
wall time (median of ``RUNS`` runs), the parent baseline, and the spread of the primary metric across random-mode
crossover seeds; and, for comparison, the grid with the reference's A-only
fine-tune target.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result  # noqa: E402
from core.artifacts import Checkpoint, float_checkpoint  # noqa: E402
from core.distill import DistillConfig, distill  # noqa: E402
from core.networks import QNetworkArch, init_network  # noqa: E402
from core.search import (
    SearchConfig,
    SearchRun,
    leaderboard,
    parent_baselines,
    recommendation,
    run_search,
    search_states,
)  # noqa: E402
from core.states import SyntheticStates, synthetic_states  # noqa: E402

SEARCH_SEEDS = (0, 1, 2, 3, 4)
RUNS = 3
N_SEARCH_STATES = 1000
BASELINE_DISTILL = DistillConfig(epochs=25, batch_size=64)


def baseline_students() -> tuple[Checkpoint, Checkpoint]:
    states = synthetic_states(SyntheticStates(5000, 42), 8)
    teachers = [float_checkpoint(init_network(QNetworkArch(), seed).state_dict()) for seed in (0, 1)]
    student_a, student_b = (distill(teacher, states, BASELINE_DISTILL).student for teacher in teachers)
    return student_a, student_b


def timed_search(parents: tuple[Checkpoint, Checkpoint], config: SearchConfig, states) -> tuple[SearchRun, float]:
    """The search and the median wall time of ``RUNS`` runs (every run gives identical results)."""
    walls = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run = run_search(*parents, config, states)
        walls.append(time.perf_counter() - started)
    return run, statistics.median(walls)


def summary(run: SearchRun, wall_s: float, baselines: list[dict]) -> dict:
    rows = leaderboard(run.results, baselines)
    advice = recommendation(run.results, rows)
    best = advice["best_child"]
    return {
        "winner": best["trial_id"],
        "winner_primary": best["primary_metric"],
        "winner_selection_primary": best["selection_primary_metric"],
        "winner_agreement_a": best["child_vs_parent_a_agreement"],
        "winner_agreement_b": best["child_vs_parent_b_agreement"],
        "winner_epochs": best["epochs"],
        "finetune_epochs": run.finetune_epochs,
        "trials_run": sum(len(results) for results in run.rung_results),
        "rungs": [
            {"n_trials": rung.n_trials, "epochs": sorted(set(rung.epochs)), "final": rung.final} for rung in run.plan
        ],
        "wall_s": wall_s,
        "parents_in_top": [row["trial_id"] for row in rows[:3] if row["is_parent_baseline"]],
        "mean_primary_by_regime": {name: group["mean_primary"] for name, group in advice["by_regime"].items()},
        "random_seed_spread": advice["random_seed_spread"],
    }


def main() -> dict:
    torch.set_num_threads(1)
    parents = baseline_students()
    per_seed = []
    for seed in SEARCH_SEEDS:
        grid_config = SearchConfig(seed=seed)
        states = search_states(grid_config, 8, N_SEARCH_STATES)
        baselines = parent_baselines(*parents, states)
        grid = summary(*timed_search(parents, grid_config, states), baselines)
        halving = summary(
            *timed_search(parents, dataclasses.replace(grid_config, scheduler="halving"), states), baselines
        )
        reference_target = summary(
            *timed_search(parents, dataclasses.replace(grid_config, finetune_target="a"), states), baselines
        )
        per_seed.append(
            {
                "search_seed": seed,
                "parents_agreement": baselines[0]["primary_metric"],
                "grid": grid,
                "halving": halving,
                "halving_minus_grid_primary": halving["winner_primary"] - grid["winner_primary"],
                "halving_found_grid_winner": halving["winner"] == grid["winner"],
                "halving_epoch_share": halving["finetune_epochs"] / grid["finetune_epochs"],
                "grid_with_reference_target_a": {
                    key: reference_target[key]
                    for key in ("winner", "winner_primary", "winner_agreement_a", "winner_agreement_b")
                },
            }
        )
    return {
        "preset": "default",
        "n_search_states": {"train": N_SEARCH_STATES, "selection": N_SEARCH_STATES, "eval": N_SEARCH_STATES},
        "parents": "baseline students of teachers 0 and 1 (distill defaults: 5000 states seed 42, 25 epochs, batch 64)",
        "wall_time": f"median of {RUNS} runs, one thread, serial in one process (excludes distilling the parents)",
        "summary": {
            "halving_minus_grid_primary": [row["halving_minus_grid_primary"] for row in per_seed],
            "halving_found_grid_winner": [row["halving_found_grid_winner"] for row in per_seed],
            "halving_epoch_share": [row["halving_epoch_share"] for row in per_seed],
            "halving_finetune_epochs": [row["halving"]["finetune_epochs"] for row in per_seed],
            "grid_wall_s": [row["grid"]["wall_s"] for row in per_seed],
            "halving_wall_s": [row["halving"]["wall_s"] for row in per_seed],
            "random_seed_std": [spread["std"] for row in per_seed for spread in row["grid"]["random_seed_spread"]],
        },
        "per_seed": per_seed,
    }


if __name__ == "__main__":
    write_result("search_core", main())
