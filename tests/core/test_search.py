"""Crossover + fine-tune search: the grid, one trial, the leaderboard, and successive halving."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from core.artifacts import Checkpoint
from core.search import (
    SearchConfig,
    SearchStates,
    halving_plan,
    leaderboard,
    manifest,
    parent_baselines,
    promote,
    recommendation,
    run_search,
    run_trial,
    search_report,
    search_states,
    trials,
)
from core.states import SyntheticStates, synthetic_states
from tests.core import baseline


@pytest.fixture(scope="module")
def baseline_students() -> tuple[Checkpoint, Checkpoint]:
    """The baseline students of teachers 0 and 1 (the defaults at 25 epochs and batch 64)."""
    return baseline.student(0), baseline.student(1)


@pytest.fixture(scope="module")
def states() -> SearchStates:
    return search_states(SearchConfig(), 8)


@pytest.fixture(scope="module")
def default_runs(baseline_students, states):
    """The default preset run by both schedulers on the baseline students and 1000 search states."""
    parent_a, parent_b = baseline_students
    grid = run_search(parent_a, parent_b, SearchConfig(), states)
    halving = run_search(parent_a, parent_b, SearchConfig(scheduler="halving"), states)
    return grid, halving


def best_child(rows: list[dict]) -> dict:
    return next(row for row in rows if not row["is_parent_baseline"])


@pytest.mark.parametrize(("preset", "size"), [("minimal", 9), ("default", 14), ("minimal-qat", 9), ("default-qat", 21)])
def test_preset_sizes(preset, size):
    assert len(trials(SearchConfig(preset=preset))) == size


def test_default_ids_are_recipe_major_in_reference_order():
    ids = [spec.trial_id for spec in trials(SearchConfig())]
    assert ids == [
        "000_random_a0p50_s0_short",
        "001_random_a0p50_s0_long",
        "002_random_a0p50_s1_short",
        "003_random_a0p50_s1_long",
        "004_random_a0p50_s2_short",
        "005_random_a0p50_s2_long",
        "006_layer_a0p50_sNone_short",
        "007_layer_a0p50_sNone_long",
        "008_weighted_a0p30_sNone_short",
        "009_weighted_a0p30_sNone_long",
        "010_weighted_a0p50_sNone_short",
        "011_weighted_a0p50_sNone_long",
        "012_weighted_a0p70_sNone_short",
        "013_weighted_a0p70_sNone_long",
    ]
    assert [spec.regime for spec in trials(SearchConfig(preset="minimal-qat"))][:3] == ["short", "short_qat", "long"]
    assert [spec.regime for spec in trials(SearchConfig(preset="default-qat"))][:3] == ["short", "long", "short_qat"]


def test_every_trial_config_is_deterministic_and_shares_one_finetune_seed():
    specs = trials(SearchConfig(seed=5))
    assert all(spec.crossover.seed is not None for spec in specs)
    assert [spec.crossover_seed for spec in specs[:8]] == [0, 0, 1, 1, 2, 2, None, None]
    assert {spec.finetune.seed for spec in specs} == {SearchConfig(seed=5).finetune_seed}
    assert SearchConfig(seed=5).finetune_seed != SearchConfig(seed=6).finetune_seed
    assert [spec.finetune.epochs for spec in specs[:2]] == [5, 20]


def test_custom_grid_expands_each_mode_as_the_reference():
    config = SearchConfig(
        preset="custom",
        crossover_modes=["random", "layer", "weighted", "aligned"],
        alpha_values=[0.3, 0.7],
        crossover_seeds=[0, 1],
        finetune_regimes=["medium"],
    )
    assert [spec.trial_id for spec in trials(config)] == [
        "000_random_a0p30_s0_medium",
        "001_random_a0p70_s0_medium",
        "002_random_a0p30_s1_medium",
        "003_random_a0p70_s1_medium",
        "004_layer_a0p50_sNone_medium",
        "005_weighted_a0p30_sNone_medium",
        "006_weighted_a0p70_sNone_medium",
        "007_aligned_a0p30_sNone_medium",
        "008_aligned_a0p70_sNone_medium",
    ]


def test_max_runs_keeps_the_first_trials():
    specs = trials(SearchConfig(max_runs=3))
    assert [spec.trial_id for spec in specs] == [spec.trial_id for spec in trials(SearchConfig())[:3]]
    assert len(trials(SearchConfig(max_runs=100))) == 14
    with pytest.raises(ValueError, match=re.escape("max_runs must be an integer in [1, 500] or None, got 0")):
        SearchConfig(max_runs=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preset": "huge"}, "preset must be one of minimal, default, minimal-qat, default-qat, custom, got 'huge'"),
        (
            {"preset": "custom", "finetune_regimes": ("short", "forever")},
            "finetune_regimes must be distinct names from short, medium, long, lr_high, short_qat, got \\['short', 'forever'\\]",
        ),
        (
            {"preset": "custom", "crossover_modes": ("random", "blend")},
            "crossover_modes must be distinct names from random, layer, weighted, aligned, got \\['random', 'blend'\\]",
        ),
        (
            {"preset": "custom", "alpha_values": (0.5, 1.5)},
            "alpha_values\\[1\\] must be a number in \\[0, 1\\], got 1.5",
        ),
        ({"alpha_values": (0.5,)}, "alpha_values apply only to preset 'custom', got preset 'default'"),
        ({"finetune_target": "b"}, "finetune_target must be 'both' or 'a', got 'b'"),
        ({"scheduler": "bandit"}, "scheduler must be 'grid' or 'halving', got 'bandit'"),
        ({"eta": 1}, re.escape("eta must be an integer in [2, 100], got 1")),
        (
            {"preset": "custom", "crossover_seeds": tuple(range(65))},
            "crossover_seeds must be 1 to 64 values without duplicates",
        ),
    ],
)
def test_invalid_configs_name_the_field_and_the_valid_values(fields, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**fields)


def test_custom_grid_over_500_trials_needs_max_runs():
    wide = {"preset": "custom", "alpha_values": tuple(i / 100 for i in range(64)), "crossover_seeds": (0, 1, 2)}
    with pytest.raises(
        ValueError, match="the custom grid has 514 trials, over the limit of 500: narrow it or set max_runs <= 500"
    ):
        SearchConfig(**wide)
    assert len(trials(SearchConfig(**wide, max_runs=500))) == 500


def test_train_selection_and_evaluation_states_are_disjoint(states):
    sets = (states.train, states.selection, states.evaluation)
    assert all(array.shape == (1000, 8) and array.dtype == np.float32 for array in sets)
    rows = [set(map(bytes, array)) for array in sets]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    uploaded = synthetic_states(SyntheticStates(300, 42), 8)
    given = search_states(SearchConfig(), 8, train_states=uploaded)
    assert np.array_equal(given.train, uploaded) and np.array_equal(given.evaluation, states.evaluation)
    assert np.array_equal(given.selection, states.selection)
    other = search_states(SearchConfig(seed=1), 8)
    assert not np.array_equal(other.train, states.train) and not np.array_equal(other.evaluation, states.evaluation)
    assert set(states.describe()) == {"train", "selection", "evaluation"}


def test_run_trial_is_deterministic(baseline_students, states):
    spec = trials(SearchConfig())[0]
    first = run_trial(*baseline_students, spec, states)
    second = run_trial(*baseline_students, spec, states)
    assert first.metrics == second.metrics
    assert all(torch.equal(first.child.tensors[key], second.child.tensors[key]) for key in first.child.tensors)
    assert first.finetune["epochs_run"] == 5 and first.evaluated_format == "float32" and first.child_int8 is None
    assert first.metrics["primary_metric"] == min(
        first.metrics["child_vs_parent_a_agreement"], first.metrics["child_vs_parent_b_agreement"]
    )
    # The figure choices are made on is measured on other states than the one reported.
    assert first.selection_primary == min(
        first.selection_metrics["child_vs_parent_a_agreement"], first.selection_metrics["child_vs_parent_b_agreement"]
    )
    assert first.selection_primary != first.metrics["primary_metric"]
    assert set(first.durations) == {"crossover_s", "finetune_s", "eval_s", "total_s"}
    json.dumps(first.to_dict(), allow_nan=False)


def test_quantizing_regime_scores_the_int8_export(baseline_students, states):
    spec = trials(SearchConfig(preset="default-qat"))[2]
    assert spec.regime == "short_qat"
    result = run_trial(*baseline_students, spec, states, epochs=2)
    assert result.evaluated_format == "int8" and result.child_int8.format == "int8"
    assert result.report["model_formats"]["child"] == "int8" and result.epochs == 2


def test_aligned_recipe_runs_on_the_training_states(baseline_students, states):
    config = SearchConfig(
        preset="custom", crossover_modes=("aligned",), alpha_values=(0.5,), finetune_regimes=("short",)
    )
    result = run_trial(*baseline_students, trials(config)[0], states, epochs=1)
    assert result.trial_id == "000_aligned_a0p50_sNone_short" and 0.0 <= result.metrics["primary_metric"] <= 1.0


def test_finetuning_toward_both_parents_lifts_the_weaker_side(baseline_students, states):
    spec_both = trials(SearchConfig())[12]
    spec_a = trials(SearchConfig(finetune_target="a"))[12]
    assert (spec_both.finetune.teacher_weight_a, spec_a.finetune.teacher_weight_a) == (0.5, 1.0)
    both = run_trial(*baseline_students, spec_both, states)
    only_a = run_trial(*baseline_students, spec_a, states)
    assert only_a.metrics["child_vs_parent_a_agreement"] > both.metrics["child_vs_parent_a_agreement"]
    assert both.metrics["child_vs_parent_b_agreement"] > only_a.metrics["child_vs_parent_b_agreement"] + 0.2
    assert both.metrics["primary_metric"] > only_a.metrics["primary_metric"] + 0.1


def test_leaderboard_ranks_by_the_selection_states_and_a_better_parent_above_children(baseline_students, states):
    result = run_trial(*baseline_students, trials(SearchConfig())[0], states, epochs=1)
    # Reported figures in the opposite order to the selection ones: the order follows selection.
    results = [
        dataclasses.replace(
            result,
            spec=spec,
            metrics={**result.metrics, "primary_metric": 1.0 - primary},
            selection_metrics={"primary_metric": primary},
        )
        for spec, primary in zip(trials(SearchConfig())[:3], (0.5, 0.9, 0.7))
    ]
    baselines = parent_baselines(*baseline_students, states)
    baselines = [{**row, "selection_primary_metric": 0.8, "primary_metric": 0.5} for row in baselines]
    rows = leaderboard(results, baselines, degenerate_threshold=0.45)
    assert [row["trial_id"] for row in rows] == [
        "001_random_a0p50_s0_long",
        "parent_a",
        "parent_b",
        "002_random_a0p50_s1_short",
        "000_random_a0p50_s0_short",
    ]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["degenerate"] for row in rows] == [True, False, False, True, False]  # degenerate by the reported figure
    tied = leaderboard(results, [{**row, "selection_primary_metric": 0.9} for row in baselines])
    assert [row["trial_id"] for row in tied[:3]] == ["001_random_a0p50_s0_long", "parent_a", "parent_b"]
    assert not any(row["degenerate"] for row in tied)


def test_parent_baselines_score_each_parent_against_both(baseline_students, states):
    parent_a, parent_b = parent_baselines(*baseline_students, states)
    assert parent_a["child_vs_parent_a_agreement"] == 1.0 and parent_b["child_vs_parent_b_agreement"] == 1.0
    agreement = parent_a["child_vs_parent_b_agreement"]
    assert (
        parent_b["child_vs_parent_a_agreement"] == agreement == parent_a["primary_metric"] == parent_b["primary_metric"]
    )
    assert (
        parent_a["kl_divergence_a"] == pytest.approx(0.0, abs=1e-6)
        and parent_a["kl_divergence_b"] > 0.0
        and parent_a["is_parent_baseline"]
    )
    assert parent_a["selection_primary_metric"] == parent_b["selection_primary_metric"] != agreement


def test_promote_keeps_the_best_third_of_each_regime_with_ties_to_the_lower_index(baseline_students, states):
    result = run_trial(*baseline_students, trials(SearchConfig())[0], states, epochs=1)
    # Trials alternate short, long: short 0, 2, 4, 6 and long 1, 3, 5.
    scores = (0.4, 0.6, 0.5, 0.6, 0.1, 0.2, 0.3)
    results = [
        dataclasses.replace(result, spec=spec, selection_metrics={"primary_metric": score})
        for spec, score in zip(trials(SearchConfig()), scores)
    ]
    assert promote(results, eta=3) == [0, 1, 2]
    assert promote(results, eta=2) == [0, 1, 2, 3]
    # A regime scoring below every trial of another still keeps its best: early scores compare only within a regime.
    long_behind = [
        score / 10 if spec.regime == "long" else score for spec, score in zip(trials(SearchConfig()), scores)
    ]
    behind = [
        dataclasses.replace(result, selection_metrics={"primary_metric": score})
        for result, score in zip(results, long_behind)
    ]
    assert promote(behind, eta=3) == [0, 1, 2]


def test_halving_plan_shape_and_budget():
    specs = trials(SearchConfig(scheduler="halving"))
    plan = halving_plan(SearchConfig(scheduler="halving"), specs)
    # Per regime (7 short, 7 long): 7 -> 3 -> 1.
    assert [(rung.index, rung.n_trials, rung.final) for rung in plan] == [(0, 14, False), (1, 6, False), (2, 2, True)]
    # A ninth, then a third of each regime's epochs (short 5, long 20), at least one.
    assert plan[0].epochs[:2] == (1, 2) and plan[1].epochs[:2] == (1, 6) and plan[2].epochs[:2] == (5, 20)
    planned_maximum = sum(plan[0].epochs) + 3 * sum(plan[1].epochs[:2]) + sum(plan[2].epochs[:2])
    assert planned_maximum == 67 < 0.4 * sum(spec.finetune.epochs for spec in specs)
    grid_plan = halving_plan(SearchConfig(), specs)
    assert len(grid_plan) == 1 and grid_plan[0].final and grid_plan[0].n_trials == 14
    assert len(halving_plan(SearchConfig(scheduler="halving", min_epochs=20), specs)) == 1


def test_halving_plan_stops_once_each_regime_is_down_to_one_trial():
    # 3 recipes x 3 regimes: one round brings every regime to one trial, so a second would promote all.
    config = SearchConfig(
        preset="custom",
        crossover_modes=("layer", "weighted"),
        alpha_values=(0.3, 0.7),
        finetune_regimes=("short", "medium", "long"),
        scheduler="halving",
    )
    plan = halving_plan(config, trials(config))
    assert [(rung.n_trials, rung.final) for rung in plan] == [(9, False), (3, True)]
    assert plan[0].epochs[:3] == (1, 3, 6)


def test_halving_finds_the_grid_winner_at_under_two_fifths_of_the_epochs(default_runs):
    """Quality bar: default preset, baseline students, 1000 search states (figures in bench/bench_search_core.py)."""
    grid, halving = default_runs
    grid_best = best_child(leaderboard(grid.results, []))
    halving_best = best_child(leaderboard(halving.results, []))
    assert halving_best["primary_metric"] >= grid_best["primary_metric"] - 0.01
    assert grid.finetune_epochs == 175
    assert halving.finetune_epochs < 0.4 * grid.finetune_epochs
    # Each regime sends its best to the final rung, where they compete at full budget.
    assert sorted(halving.specs[result.index].regime for result in halving.rung_results[-1]) == ["long", "short"]
    # Restarting survivors from scratch reproduces the grid's result bit for bit.
    for result in halving.rung_results[-1]:
        assert result.metrics == grid.results[result.index].metrics
    assert {result.rung for result in halving.results} == {0, 1, 2}


def test_children_tuned_toward_both_beat_the_parents(default_runs, baseline_students, states):
    grid, _ = default_runs
    rows = leaderboard(grid.results, parent_baselines(*baseline_students, states))
    advice = recommendation(grid.results, rows)
    assert advice["best_child"] == best_child(rows) and not advice["best_row_is_parent"]
    assert (
        advice["best_child_beats_parents"]
        and advice["best_child"]["primary_metric"] > advice["parents_agreement"] + 0.15
    )
    assert sum(group["recommended"] for group in advice["by_mode"].values()) == 1
    assert advice["recommended_regime"] in ("short", "long") and advice["by_regime"]["long"]["n"] == 7
    spread = {(row["alpha"], row["regime"]): row for row in advice["random_seed_spread"]}
    assert set(spread) == {(0.5, "short"), (0.5, "long")} and set(spread[(0.5, "short")]["primary_by_seed"]) == {
        "0",
        "1",
        "2",
    }
    assert spread[(0.5, "long")]["std"] > 0


def test_manifest_records_every_trial_config(default_runs):
    _, halving = default_runs
    entries = manifest(halving.config, halving.specs, halving.results, torch.__version__)
    json.dumps(entries, allow_nan=False)
    assert [entry["trial_id"] for entry in entries] == [spec.trial_id for spec in halving.specs]
    first = entries[1]
    assert (
        first["crossover"]["mode"] == "random"
        and first["crossover"]["seed"] == 0
        and first["crossover"]["granularity"] == "tensor"
    )
    assert (
        first["finetune"]["regime"] == "long"
        and first["finetune"]["regime_epochs"] == 20
        and first["finetune"]["lr"] == 1e-4
    )
    assert first["finetune"]["finetune_target"] == "both" and first["finetune"]["teacher_weight_a"] == 0.5
    assert first["seeds"] == {"search": 0, "finetune": halving.config.finetune_seed, "crossover": 0}
    assert first["finetune"]["epochs"] == first["finetune_metrics"]["epochs_run"]
    assert {entry["stopped_at_rung"] for entry in entries} == {0, 1, 2}
    assert entries[6]["crossover"]["seed"] is None and entries[6]["metrics"]["primary_metric"] >= 0.0
    missing = manifest(halving.config, halving.specs, halving.results[:1], torch.__version__)
    assert missing[1]["status"] == "not_run" and missing[1]["metrics"] is None


def test_search_report_names_the_winner_and_its_checkpoint(default_runs, baseline_students, states):
    grid, _ = default_runs
    baselines = parent_baselines(*baseline_students, states)
    checkpoint_ids = {result.index: f"ckpt_{result.index}" for result in grid.results}
    body = search_report(
        grid.config,
        grid.specs,
        grid.plan,
        grid.results,
        baselines,
        checkpoint_ids,
        {},
        14,
        grid.finetune_epochs,
        torch.__version__,
    )
    json.dumps(body, allow_nan=False)
    winner = next(row for row in body["leaderboard"] if not row["is_parent_baseline"])
    assert body["winner"] == {
        "trial_id": winner["trial_id"],
        "checkpoint_id": f"ckpt_{winner['index']}",
        "primary_metric": winner["primary_metric"],
        "selection_primary_metric": winner["selection_primary_metric"],
    }
    assert body["passed"] is True and body["scheduler"]["total_finetune_epochs"] == 175
    assert all(row["checkpoint_id"] is None for row in body["leaderboard"] if row["is_parent_baseline"])
    assert [entry["checkpoint_id"] for entry in body["manifest"]] == [f"ckpt_{index}" for index in range(14)]
