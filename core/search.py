"""Crossover + fine-tune search: a grid of trials, one self-contained function call each.

A trial crosses the two parents over with one recipe (``CrossoverConfig``),
fine-tunes the child with one regime (``core.finetune``) and scores it with
``validate_recombination`` on evaluation states held out from fine-tuning.
The score that ranks trials is the primary metric
``min(agreement with A, agreement with B)``: a child is only as good as its
weaker side.

Presets (reference §9; trials are recipe-major, in this order)::

    minimal      random a.5 s0; layer; weighted a.5                        x short, medium, long        9
    default      random a.5 s0, s1, s2; layer; weighted a.3, a.5, a.7       x short, long               14
    minimal-qat  as minimal                                                 x short, short_qat, long     9
    default-qat  as default                                                 x short, long, short_qat    21
    custom       modes x (random: per seed, per alpha; layer: once;
                 weighted and aligned: per alpha)                           x finetune_regimes

Two departures from the reference, both from its known weaknesses:

- By default each child is fine-tuned toward both parents (the dual-teacher
  loss at equal weights), so the objective matches the primary metric;
  ``finetune_target="a"`` restores the reference's A-only target.
- Fine-tuning and evaluation use disjoint state draws (``search_states``),
  and parent baselines are ranked together with the children.

Every trial of one search shares one fine-tune seed (derived from the search
seed), so trials differ only by recipe and regime, not by split or shuffle
luck. Trials are deterministic: a worker can rebuild trial ``i`` as
``trials(config)[i]`` and get bit-identical metrics on any machine count.
``scheduler="halving"`` spends fine-tune epochs by successive halving
(``halving_plan``, ``promote``); ``run_search`` runs either scheduler serially
in this process.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from core import metrics
from core.artifacts import Checkpoint
from core.crossover import CrossoverConfig, crossover
from core.finetune import REGIMES, FinetuneConfig, finetune
from core.quantize import inference_forward
from core.states import SyntheticStates, derive_seed, synthetic_states, validate_states
from core.training import EpochMetrics
from core.validate import RecombinationValidationConfig, validate_recombination

Preset = Literal["minimal", "default", "minimal-qat", "default-qat", "custom"]
FinetuneTarget = Literal["both", "a"]
Scheduler = Literal["grid", "halving"]

CROSSOVER_MODES = ("random", "layer", "weighted", "aligned")
MAX_TRIALS = 500
# The fixed alpha of recipes that ignore it (layer), as in the reference's ids.
UNUSED_ALPHA = 0.5
_MINIMAL_RECIPES = (
    CrossoverConfig(mode="random", alpha=0.5, seed=0),
    CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA),
    CrossoverConfig(mode="weighted", alpha=0.5),
)
_DEFAULT_RECIPES = (
    *(CrossoverConfig(mode="random", alpha=0.5, seed=seed) for seed in (0, 1, 2)),
    CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA),
    *(CrossoverConfig(mode="weighted", alpha=alpha) for alpha in (0.3, 0.5, 0.7)),
)
PRESETS: dict[str, tuple[tuple[CrossoverConfig, ...], tuple[str, ...]]] = {
    "minimal": (_MINIMAL_RECIPES, ("short", "medium", "long")),
    "default": (_DEFAULT_RECIPES, ("short", "long")),
    "minimal-qat": (_MINIMAL_RECIPES, ("short", "short_qat", "long")),
    "default-qat": (_DEFAULT_RECIPES, ("short", "long", "short_qat")),
}
PRESET_NAMES = (*PRESETS, "custom")
CUSTOM_FIELDS = ("crossover_modes", "alpha_values", "crossover_seeds", "finetune_regimes")
EVALUATION = RecombinationValidationConfig(report_only=True)


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how to schedule it.

    ``preset`` fixes the recipes and regimes; ``crossover_modes``,
    ``alpha_values``, ``crossover_seeds`` and ``finetune_regimes`` build the
    grid of ``preset="custom"`` and must keep their defaults otherwise.
    ``max_runs`` keeps the first N trials. ``degenerate_threshold`` (0 = off)
    flags leaderboard rows whose primary metric is below it.
    ``finetune_target`` "both" fine-tunes toward A and B at equal weights,
    "a" toward A only (the reference). ``include_parent_baseline`` ranks the
    two parents with the children. ``scheduler`` "halving" runs successive
    halving over fine-tune epochs (``halving_plan``): each rung keeps the best
    ``ceil(n / eta)`` trials of each regime and gives them ``eta`` times the
    epochs, never fewer than ``min_epochs``.
    ``seed`` is the one search seed every other seed is derived from.
    """

    preset: Preset = "default"
    crossover_modes: tuple[str, ...] = ("random", "layer", "weighted")
    alpha_values: tuple[float, ...] = (0.3, 0.5, 0.7)
    crossover_seeds: tuple[int, ...] = (0, 1, 2)
    finetune_regimes: tuple[str, ...] = ("short", "long")
    max_runs: int | None = None
    degenerate_threshold: float = 0.0
    finetune_target: FinetuneTarget = "both"
    include_parent_baseline: bool = True
    scheduler: Scheduler = "grid"
    eta: int = 3
    min_epochs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        for name in CUSTOM_FIELDS:
            # Lists from JSON become tuples, so the config stays hashable and frozen.
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.preset != "custom":
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            changed = [name for name in CUSTOM_FIELDS if getattr(self, name) != defaults[name]]
            if changed:
                raise ValueError(f"{', '.join(changed)} apply only to preset 'custom', got preset {self.preset!r}")
        _check_names("crossover_modes", self.crossover_modes, CROSSOVER_MODES)
        _check_names("finetune_regimes", self.finetune_regimes, tuple(REGIMES))
        if not all(_in_unit_interval(alpha) for alpha in self.alpha_values):
            raise ValueError(f"alpha_values must be numbers in [0, 1], got {list(self.alpha_values)}")
        if any(not _is_int(seed) or seed < 0 for seed in self.crossover_seeds):
            raise ValueError(f"crossover_seeds must be non-negative integers, got {list(self.crossover_seeds)}")
        for name in ("alpha_values", "crossover_seeds"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be non-empty without duplicates, got {list(values)}")
        if self.max_runs is not None and (not _is_int(self.max_runs) or self.max_runs < 1):
            raise ValueError(f"max_runs must be an integer >= 1 or None, got {self.max_runs!r}")
        if not _in_unit_interval(self.degenerate_threshold):
            raise ValueError(f"degenerate_threshold must be in [0, 1], got {self.degenerate_threshold!r}")
        if self.finetune_target not in ("both", "a"):
            raise ValueError(f"finetune_target must be 'both' or 'a', got {self.finetune_target!r}")
        if not isinstance(self.include_parent_baseline, bool):
            raise ValueError(f"include_parent_baseline must be a bool, got {self.include_parent_baseline!r}")
        if self.scheduler not in ("grid", "halving"):
            raise ValueError(f"scheduler must be 'grid' or 'halving', got {self.scheduler!r}")
        if not _is_int(self.eta) or self.eta < 2:
            raise ValueError(f"eta must be an integer >= 2, got {self.eta!r}")
        if not _is_int(self.min_epochs) or self.min_epochs < 1:
            raise ValueError(f"min_epochs must be an integer >= 1, got {self.min_epochs!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        size = len(_recipes(self)) * len(_regimes(self))
        if size > MAX_TRIALS and (self.max_runs is None or self.max_runs > MAX_TRIALS):
            raise ValueError(f"the custom grid has {size} trials, over the limit of {MAX_TRIALS}: narrow it or set max_runs <= {MAX_TRIALS}")

    @property
    def finetune_seed(self) -> int:
        """The fine-tune seed shared by every trial of this search."""
        return derive_seed(self.seed, "search/finetune")


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a crossover recipe and a fine-tune regime, at position ``index`` of the grid."""

    index: int
    trial_id: str
    crossover: CrossoverConfig
    regime: str
    finetune: FinetuneConfig

    @property
    def crossover_seed(self) -> int | None:
        """The seed the crossover draws from: only ``random`` mode draws, the others record None."""
        return _drawn_seed(self.crossover)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "trial_id": self.trial_id,
            "crossover": {**dataclasses.asdict(self.crossover), "seed": self.crossover_seed},
            "regime": self.regime,
            "finetune": dataclasses.asdict(self.finetune),
        }


def trials(config: SearchConfig) -> list[TrialSpec]:
    """The search's trials in run order (recipe-major), cut to ``config.max_runs``.

    Ids follow the reference: ``{index:03d}_{mode}_a{alpha:.2f, "." -> "p"}_s{seed|None}_{regime}``,
    e.g. ``000_random_a0p50_s0_short``, ``006_layer_a0p50_sNone_long``.
    """
    teacher_weight_a = 0.5 if config.finetune_target == "both" else 1.0
    specs = []
    for recipe in _recipes(config):
        for regime in _regimes(config):
            index = len(specs)
            finetune_config = FinetuneConfig(regime=regime, seed=config.finetune_seed, teacher_weight_a=teacher_weight_a)
            alpha = f"{recipe.alpha:.2f}".replace(".", "p")
            trial_id = f"{index:03d}_{recipe.mode}_a{alpha}_s{_drawn_seed(recipe)}_{regime}"
            specs.append(TrialSpec(index, trial_id, recipe, regime, finetune_config))
    return specs[: config.max_runs]


def search_states(
    config: SearchConfig,
    input_dim: int,
    n_states: int = 1000,
    train_states: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_states, eval_states)``, float32 ``(n, input_dim)`` each.

    Both are standard-normal draws from seeds derived from ``config.seed``
    for different purposes, so the children are scored on states they were
    not fine-tuned on (the reference scores on its fine-tune buffer). Given
    ``train_states`` (an uploaded buffer) are validated and returned as they
    are; the ``n_states`` evaluation states are drawn either way.
    """
    if train_states is None:
        train = synthetic_states(SyntheticStates(n_states, derive_seed(config.seed, "search/train_states")), input_dim)
    else:
        train = validate_states(np.asarray(train_states), input_dim)
    evaluation = synthetic_states(SyntheticStates(n_states, derive_seed(config.seed, "search/eval_states")), input_dim)
    return train, evaluation


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced.

    ``child`` is the fine-tuned float32 child (None in a result rebuilt from
    its dict by ``trial_result_from_dict``) and ``child_int8`` its int8
    export when the regime quantizes; ``evaluated_format`` says which of the
    two was scored. ``epochs`` is the fine-tune epoch budget the trial ran
    with (the regime's, or a halving rung's) and ``rung`` the halving rung
    (0 for a grid). ``metrics`` holds ``primary_metric``,
    ``child_vs_parent_{a,b}_agreement``, ``oracle_agreement``,
    ``kl_divergence_{a,b}``, ``mse_{a,b}`` and ``cosine_{a,b}`` on the
    evaluation states; ``finetune`` the fine-tune record (validation loss and
    agreement with A on the fine-tune validation split before and after,
    ``best_epoch``, ``epochs_run``); ``durations`` seconds per stage;
    ``report`` the full ``validate_recombination`` report.
    """

    spec: TrialSpec
    epochs: int
    rung: int
    child: Checkpoint | None
    child_int8: Checkpoint | None
    evaluated_format: Literal["float32", "int8"]
    metrics: dict[str, float]
    finetune: dict[str, Any]
    durations: dict[str, float]
    report: dict

    @property
    def trial_id(self) -> str:
        return self.spec.trial_id

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def full_budget(self) -> bool:
        """True when the trial ran its regime's full epochs (every grid trial does)."""
        return self.epochs == self.spec.finetune.epochs

    def to_dict(self) -> dict:
        """JSON-ready: everything but the checkpoints' tensors."""
        return {
            "trial_id": self.trial_id,
            "index": self.index,
            "rung": self.rung,
            "epochs": self.epochs,
            "spec": self.spec.to_dict(),
            "evaluated_format": self.evaluated_format,
            "has_int8_export": self.child_int8 is not None,
            "metrics": dict(self.metrics),
            "finetune": dict(self.finetune),
            "durations": dict(self.durations),
            "report": self.report,
        }


def trial_result_from_dict(data: dict, spec: TrialSpec) -> TrialResult:
    """Rebuild a result from its ``to_dict()`` (a trial run as a job elsewhere), without the checkpoints.

    Enough for ``leaderboard``, ``manifest``, ``recommendation`` and ``promote``.
    """
    if data["index"] != spec.index:
        raise ValueError(f"result of trial {data['index']} given with the spec of trial {spec.index}")
    return TrialResult(
        spec=spec,
        epochs=data["epochs"],
        rung=data["rung"],
        child=None,
        child_int8=None,
        evaluated_format=data["evaluated_format"],
        metrics=dict(data["metrics"]),
        finetune=dict(data["finetune"]),
        durations=dict(data["durations"]),
        report=data["report"],
    )


def run_trial(
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    spec: TrialSpec,
    train_states: np.ndarray | torch.Tensor,
    eval_states: np.ndarray | torch.Tensor,
    *,
    epochs: int | None = None,
    rung: int = 0,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrialResult:
    """Cross over, fine-tune on ``train_states``, and score on ``eval_states``.

    Parents may be float32 or int8 (crossover dequantizes them). ``aligned``
    recipes match units on ``train_states``. ``epochs`` overrides the
    regime's epochs (a halving rung); ``rung`` is recorded in the result.
    ``on_epoch`` is passed to the fine-tune loop (progress, cancellation).
    Same inputs give bit-identical children and metrics.
    """
    started = time.perf_counter()
    train = validate_states(np.asarray(train_states), parent_a.arch.input_dim)
    crossed = crossover(parent_a, parent_b, spec.crossover, states=train if spec.crossover.needs_states else None)
    crossed_at = time.perf_counter()
    config = spec.finetune if epochs is None else dataclasses.replace(spec.finetune, epochs=epochs)
    tuned = finetune(crossed.child, parent_a, train, config, reference_b=parent_b, on_epoch=on_epoch)
    tuned_at = time.perf_counter()
    lineage = {"stage": "search_trial", **spec.to_dict(), "finetune": dataclasses.asdict(config)}
    child = dataclasses.replace(tuned.child, metadata=lineage)
    child_int8 = dataclasses.replace(tuned.child_int8, metadata=lineage) if tuned.child_int8 is not None else None
    evaluated = child_int8 if child_int8 is not None else child
    report = validate_recombination(evaluated, parent_a, parent_b, eval_states, EVALUATION)
    finished = time.perf_counter()
    versus_a, versus_b = report["comparisons"]["child_vs_parent_a"], report["comparisons"]["child_vs_parent_b"]
    return TrialResult(
        spec=spec,
        epochs=config.epochs,
        rung=rung,
        child=child,
        child_int8=child_int8,
        evaluated_format=evaluated.format,
        metrics={
            "primary_metric": report["summary"]["primary_metric"],
            "child_vs_parent_a_agreement": versus_a["action_agreement"],
            "child_vs_parent_b_agreement": versus_b["action_agreement"],
            "oracle_agreement": report["summary"]["oracle_agreement"],
            "kl_divergence_a": versus_a["kl_divergence"],
            "kl_divergence_b": versus_b["kl_divergence"],
            "mse_a": versus_a["mse"],
            "mse_b": versus_b["mse"],
            "cosine_a": versus_a["mean_cosine_similarity"],
            "cosine_b": versus_b["mean_cosine_similarity"],
        },
        finetune={
            "before_val_loss": tuned.before.val_loss if tuned.before is not None else None,
            "after_val_loss": tuned.after.val_loss if tuned.after is not None else None,
            "before_action_agreement": tuned.before.action_agreement if tuned.before is not None else None,
            "after_action_agreement": tuned.after.action_agreement if tuned.after is not None else None,
            "best_epoch": tuned.best_epoch,
            "epochs_run": len(tuned.history),
            "early_stopped": tuned.early_stopped,
        },
        durations={
            "crossover_s": crossed_at - started,
            "finetune_s": tuned_at - crossed_at,
            "eval_s": finished - tuned_at,
            "total_s": finished - started,
        },
        report=report,
    )


def parent_baselines(parent_a: Checkpoint, parent_b: Checkpoint, eval_states: np.ndarray | torch.Tensor) -> list[dict]:
    """Both parents scored as if they were children, on the trials' evaluation states.

    Parent A agrees with A fully, so its primary metric is its agreement with
    B; parent B is the mirror. These are the rows a child has to beat to be
    worth more than keeping a parent. Rows have the leaderboard's columns
    without ``rank`` and ``degenerate``.
    """
    states = torch.from_numpy(validate_states(np.asarray(eval_states), parent_a.arch.input_dim))
    with torch.inference_mode():
        q_a, q_b = inference_forward(parent_a)(states), inference_forward(parent_b)(states)
    rows = []
    for name, parent, q_self in (("parent_a", parent_a, q_a), ("parent_b", parent_b, q_b)):
        agree_a, agree_b = metrics.action_agreement(q_a, q_self), metrics.action_agreement(q_b, q_self)
        rows.append(
            {
                "trial_id": name,
                "index": None,
                "is_parent_baseline": True,
                "crossover_mode": None,
                "crossover_alpha": None,
                "crossover_seed": None,
                "finetune_regime": None,
                "epochs": None,
                "rung": None,
                "evaluated_format": parent.format,
                "primary_metric": min(agree_a, agree_b),
                "child_vs_parent_a_agreement": agree_a,
                "child_vs_parent_b_agreement": agree_b,
                "oracle_agreement": metrics.oracle_agreement(q_self, q_a, q_b),
                "kl_divergence_a": metrics.kl_divergence(q_a, q_self),
                "kl_divergence_b": metrics.kl_divergence(q_b, q_self),
                "mse_a": metrics.mse(q_a, q_self),
                "mse_b": metrics.mse(q_b, q_self),
                "cosine_a": metrics.mean_cosine_similarity(q_a, q_self),
                "cosine_b": metrics.mean_cosine_similarity(q_b, q_self),
            }
        )
    return rows


def leaderboard(results: Sequence[TrialResult], baselines: Sequence[dict], degenerate_threshold: float = 0.0) -> list[dict]:
    """Children and parent baselines ranked together by primary metric, best first.

    Ties go to the lower trial index, and parents come after children they
    tie with; ranks are 1..n in that order. ``degenerate`` is
    ``primary_metric < degenerate_threshold`` (never with threshold 0). With
    halving, pass each trial's latest result: a row's ``epochs`` and
    ``rung`` say how far it was trained.
    """
    rows = [_child_row(result) for result in results] + [dict(row) for row in baselines]
    rows.sort(key=lambda row: (-row["primary_metric"], row["is_parent_baseline"], row["index"] or 0, row["trial_id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["degenerate"] = _degenerate(row["primary_metric"], degenerate_threshold)
    return rows


def ranked_rows(results: Sequence[TrialResult], baselines: Sequence[dict], checkpoint_ids: dict[int, str], degenerate_threshold: float = 0.0) -> list[dict]:
    """``leaderboard`` rows, each child's naming the stored checkpoint of its trial (``checkpoint_ids`` by trial index)."""
    rows = leaderboard(results, baselines, degenerate_threshold)
    for row in rows:
        row["checkpoint_id"] = None if row["is_parent_baseline"] else checkpoint_ids.get(row["index"])
    return rows


def search_report(
    config: SearchConfig,
    specs: Sequence[TrialSpec],
    plan: Sequence[Rung],
    results: Sequence[TrialResult],
    baselines: Sequence[dict],
    checkpoint_ids: dict[int, str],
    failed: dict[str, str],
    trial_runs: int,
    finetune_epochs: int,
    torch_version: str,
) -> dict:
    """The body of a finished search's report: winner, leaderboard, manifest, recommendation and schedule.

    ``results`` holds each trial's latest result; ``trial_runs`` and
    ``finetune_epochs`` count every trial run and epoch trained across the
    rungs; ``failed`` names trial runs that did not succeed and why.
    """
    rows = ranked_rows(results, baselines, checkpoint_ids, config.degenerate_threshold)
    entries = manifest(config, specs, results, torch_version)
    for entry in entries:
        entry["checkpoint_id"] = checkpoint_ids.get(entry["index"])
    best = next((row for row in rows if not row["is_parent_baseline"]), None)
    return {
        "passed": best is not None and not best["degenerate"],
        "winner": None if best is None else {"trial_id": best["trial_id"], "checkpoint_id": best["checkpoint_id"], "primary_metric": best["primary_metric"]},
        "leaderboard": rows,
        "manifest": entries,
        "recommendation": recommendation(results, rows),
        "scheduler": {
            "name": config.scheduler,
            "eta": config.eta,
            "rungs": [{"index": rung.index, "n_trials": rung.n_trials, "final": rung.final} for rung in plan],
            "trial_jobs": trial_runs,
            "total_finetune_epochs": finetune_epochs,
            "stopped_at_rung": {result.trial_id: result.rung for result in results},
        },
        "failed_trials": failed,
        "config": dataclasses.asdict(config),
    }


def manifest(config: SearchConfig, specs: Sequence[TrialSpec], results: Sequence[TrialResult], torch_version: str) -> list[dict]:
    """One JSON-ready entry per trial, in run order: the full config it ran with and what it measured.

    ``results`` holds each trial's latest result (any order); a trial
    without one is listed with ``status`` "not_run". ``stopped_at_rung`` is
    the last halving rung the trial ran in (0 for a grid).
    """
    by_index = {result.index: result for result in results}
    entries = []
    for spec in specs:
        result = by_index.get(spec.index)
        finetune_config = spec.finetune if result is None else dataclasses.replace(spec.finetune, epochs=result.epochs)
        entries.append(
            {
                "trial_id": spec.trial_id,
                "index": spec.index,
                "status": "not_run" if result is None else "done",
                "crossover": {**dataclasses.asdict(spec.crossover), "seed": spec.crossover_seed},
                "finetune": {
                    **dataclasses.asdict(finetune_config),
                    "regime_epochs": spec.finetune.epochs,
                    "finetune_target": config.finetune_target,
                },
                "seeds": {"search": config.seed, "finetune": spec.finetune.seed, "crossover": spec.crossover_seed},
                "scheduler": config.scheduler,
                "stopped_at_rung": None if result is None else result.rung,
                "evaluated_format": None if result is None else result.evaluated_format,
                "metrics": None if result is None else dict(result.metrics),
                "degenerate": None if result is None else _degenerate(result.metrics["primary_metric"], config.degenerate_threshold),
                "finetune_metrics": None if result is None else dict(result.finetune),
                "durations": None if result is None else dict(result.durations),
                "torch_version": torch_version,
            }
        )
    return entries


def recommendation(results: Sequence[TrialResult], rows: Sequence[dict]) -> dict:
    """What to use: the best child, and which mode and regime do best on average.

    ``rows`` is the ``leaderboard``. Averages and the seed spread use only
    results trained for their regime's full epochs (so halving's early exits
    do not drag a mode down); each group lists how many trials it averages.
    ``random_seed_spread`` gives, per (alpha, regime) of the random mode,
    the primary metric of each crossover seed and their sample standard
    deviation: how much of a ranking is seed luck.
    """
    child_rows = [row for row in rows if not row["is_parent_baseline"]]
    parent_rows = [row for row in rows if row["is_parent_baseline"]]
    complete = [result for result in results if result.full_budget]
    by_mode = _mean_primary(complete, lambda result: result.spec.crossover.mode)
    by_regime = _mean_primary(complete, lambda result: result.spec.regime)
    for regime, group in by_regime.items():
        group["lr"], group["epochs"] = REGIMES[regime].lr, REGIMES[regime].epochs
    spread: dict[tuple[float, str], dict[int, float]] = {}
    for result in complete:
        if result.spec.crossover.mode == "random":
            group = spread.setdefault((result.spec.crossover.alpha, result.spec.regime), {})
            group[result.spec.crossover.seed] = result.metrics["primary_metric"]
    baseline = parent_rows[0]["primary_metric"] if parent_rows else None
    best = child_rows[0] if child_rows else None
    return {
        "n_children": len(child_rows),
        "n_degenerate": sum(row["degenerate"] for row in child_rows),
        "best_child": best,
        "top_3": [row["trial_id"] for row in child_rows[:3]],
        "best_row_is_parent": bool(rows) and rows[0]["is_parent_baseline"],
        "parent_baseline_agreement": baseline,
        "best_child_beats_parents": None if best is None or baseline is None else best["primary_metric"] > baseline,
        "by_mode": by_mode,
        "by_regime": by_regime,
        "recommended_mode": next((name for name, group in by_mode.items() if group["recommended"]), None),
        "recommended_regime": next((name for name, group in by_regime.items() if group["recommended"]), None),
        "random_seed_spread": [
            {
                "alpha": alpha,
                "regime": regime,
                "primary_by_seed": {str(seed): value for seed, value in sorted(by_seed.items())},
                "std": statistics.stdev(by_seed.values()) if len(by_seed) > 1 else None,
                "range": max(by_seed.values()) - min(by_seed.values()),
            }
            for (alpha, regime), by_seed in spread.items()
        ],
    }


@dataclass(frozen=True)
class Rung:
    """One round of a schedule: ``n_trials`` trials run, trial ``i`` for ``epochs[i]`` fine-tune epochs.

    ``epochs`` has an entry for every trial of the search (indexed by trial
    index), whether or not it survives to this rung. In the ``final`` rung
    every trial runs its regime's full epochs.
    """

    index: int
    n_trials: int
    epochs: tuple[int, ...]
    final: bool

    def epochs_for(self, spec: TrialSpec) -> int:
        return self.epochs[spec.index]


def halving_plan(config: SearchConfig, specs: Sequence[TrialSpec]) -> list[Rung]:
    """The rungs ``specs`` run in: successive halving over fine-tune epochs, within each regime.

    ``R`` rounds come before the final one: ``floor(log_eta(n))`` for ``n``
    trials, but no more than it takes to bring every regime down to one
    trial. Rung ``r`` gives each trial ``full // eta**(R - r)`` epochs of its
    own regime's ``full`` (at least ``config.min_epochs``): a ninth, then a
    third of the budget... so every rung multiplies a trial's epochs by
    ``eta``. After each rung the best ``ceil(n_regime / eta)`` trials of each
    regime go on (``promote``); the final rung runs the survivors, at least
    one per regime, at full epochs. A rung that would give no trial more
    epochs than the previous one is skipped. With ``scheduler="grid"`` the
    plan is one final rung holding every trial, so a runner has one code path.

    Partial budgets are compared only within a regime, because regimes learn
    at different rates and an early score measures that rate, not where a
    trial ends. On the ``default`` preset with the baseline students (search
    seeds 0-4), grid's usual winner, a ``long`` child (lr 1e-4), scores
    0.32-0.35 after 2 of its 20 epochs and ends at 0.50-0.52, while the best
    ``short`` child scores 0.49-0.50 after 1 of its 5 epochs and ends at
    0.48-0.50. Ranked all together, the first rung kept one ``long`` trial
    of seven, not that one, and halving missed grid's best score by
    0.014-0.040 on 4 of 5 seeds; ranked per regime it found grid's winner on
    all 5 with 64 of grid's 175 epochs. Budget fractions (rather than one
    epoch count for all) keep each rung's epochs in proportion to the
    regime's own budget.

    A promoted trial restarts from its crossover with the new epoch count
    rather than continuing from its rung checkpoint. Restarting costs at most
    a ``1 / eta`` share more epochs and buys: a trial stays one deterministic
    function call (no optimizer state carried between jobs), a survivor's
    final result is bit-identical to the grid's for the same trial (so the
    two schedulers compare exactly), and a trial whose epochs do not grow
    from one rung to the next keeps its result instead of running again.
    """
    n_trials = len(specs)
    full = tuple(spec.finetune.epochs for spec in specs)
    if config.scheduler == "grid" or n_trials <= 1:
        return [Rung(0, n_trials, full, True)]
    regime_sizes = list(Counter(spec.regime for spec in specs).values())
    rounds, largest = 0, max(regime_sizes)
    # Past one trial per regime a round would promote every survivor: epochs for nothing.
    while config.eta ** (rounds + 1) <= n_trials and largest > 1:
        rounds, largest = rounds + 1, math.ceil(largest / config.eta)
    rungs: list[Rung] = []
    for round_index in range(rounds):
        divisor = config.eta ** (rounds - round_index)
        epochs = tuple(min(epochs, max(config.min_epochs, epochs // divisor)) for epochs in full)
        if epochs == full:
            break
        if rungs and epochs == rungs[-1].epochs:
            continue
        rungs.append(Rung(len(rungs), sum(regime_sizes), epochs, False))
        regime_sizes = [math.ceil(size / config.eta) for size in regime_sizes]
    rungs.append(Rung(len(rungs), sum(regime_sizes), full, True))
    return rungs


def promote(rung_results: Sequence[TrialResult], eta: int) -> list[int]:
    """Indices of the best ``ceil(n / eta)`` results of each regime by primary metric (ties: lower index), in index order.

    Each regime is ranked on its own (see ``halving_plan``), so every regime
    keeps at least one trial.
    """
    by_regime: dict[str, list[TrialResult]] = {}
    for result in rung_results:
        by_regime.setdefault(result.spec.regime, []).append(result)
    promoted = []
    for results in by_regime.values():
        ranked = sorted(results, key=lambda result: (-result.metrics["primary_metric"], result.index))
        promoted.extend(result.index for result in ranked[: math.ceil(len(results) / eta)])
    return sorted(promoted)


def rung_work(rung: Rung, survivors: Sequence[int], specs: Sequence[TrialSpec], latest: dict[int, TrialResult]) -> tuple[list[TrialSpec], list[TrialResult]]:
    """What one rung needs: the trials to run (longest first), and the results it keeps as they are.

    A survivor whose epochs do not grow in this rung keeps its latest result
    (relabelled with this rung) instead of running again. Longest first:
    with several workers the rung then ends sooner.
    """
    to_run, kept = [], []
    for index in sorted(survivors, key=lambda index: (-rung.epochs_for(specs[index]), index)):
        previous = latest.get(index)
        if previous is not None and previous.epochs == rung.epochs_for(specs[index]):
            kept.append(dataclasses.replace(previous, rung=rung.index))
        else:
            to_run.append(specs[index])
    return to_run, kept


@dataclass(frozen=True)
class SearchRun:
    """A whole search run in one process.

    ``results`` holds each trial's latest result in index order;
    ``rung_results`` every rung's results; ``finetune_epochs`` the epochs
    actually trained (results kept from an earlier rung cost none).
    """

    config: SearchConfig
    specs: list[TrialSpec]
    plan: list[Rung]
    rung_results: list[list[TrialResult]]
    results: list[TrialResult]
    finetune_epochs: int
    elapsed_s: float


def run_search(
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    config: SearchConfig,
    train_states: np.ndarray | torch.Tensor,
    eval_states: np.ndarray | torch.Tensor,
) -> SearchRun:
    """Run every trial of ``config`` serially, rung by rung (``halving_plan``).

    The worker runs the same plan with one job per trial; this is the
    in-process form for notebooks, tests and benchmarks.
    """
    started = time.perf_counter()
    specs = trials(config)
    plan = halving_plan(config, specs)
    survivors = [spec.index for spec in specs]
    latest: dict[int, TrialResult] = {}
    rung_results = []
    finetune_epochs = 0
    for rung in plan:
        to_run, kept = rung_work(rung, survivors, specs, latest)
        results_here = list(kept)
        for spec in to_run:
            result = run_trial(parent_a, parent_b, spec, train_states, eval_states, epochs=rung.epochs_for(spec), rung=rung.index)
            finetune_epochs += result.finetune["epochs_run"]
            results_here.append(result)
        latest.update({result.index: result for result in results_here})
        rung_results.append(results_here)
        if not rung.final:
            survivors = promote(results_here, config.eta)
    return SearchRun(
        config=config,
        specs=specs,
        plan=plan,
        rung_results=rung_results,
        results=[latest[index] for index in sorted(latest)],
        finetune_epochs=finetune_epochs,
        elapsed_s=time.perf_counter() - started,
    )


def _recipes(config: SearchConfig) -> tuple[CrossoverConfig, ...]:
    if config.preset != "custom":
        return PRESETS[config.preset][0]
    recipes: list[CrossoverConfig] = []
    for mode in config.crossover_modes:
        if mode == "random":
            recipes.extend(
                CrossoverConfig(mode="random", alpha=alpha, seed=seed) for seed in config.crossover_seeds for alpha in config.alpha_values
            )
        elif mode == "layer":
            recipes.append(CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA))
        else:
            recipes.extend(CrossoverConfig(mode=mode, alpha=alpha) for alpha in config.alpha_values)
    return tuple(recipes)


def _drawn_seed(recipe: CrossoverConfig) -> int | None:
    # Layer, weighted and aligned recipes keep CrossoverConfig's fixed default
    # seed, which they never draw from; ids and manifests show None for them.
    return recipe.seed if recipe.mode == "random" else None


def _regimes(config: SearchConfig) -> tuple[str, ...]:
    return PRESETS[config.preset][1] if config.preset != "custom" else config.finetune_regimes


def _child_row(result: TrialResult) -> dict:
    spec = result.spec
    return {
        "trial_id": spec.trial_id,
        "index": spec.index,
        "is_parent_baseline": False,
        "crossover_mode": spec.crossover.mode,
        "crossover_alpha": spec.crossover.alpha,
        "crossover_seed": spec.crossover_seed,
        "finetune_regime": spec.regime,
        "epochs": result.epochs,
        "rung": result.rung,
        "evaluated_format": result.evaluated_format,
        **result.metrics,
    }


def _mean_primary(results: Sequence[TrialResult], group_of: Callable[[TrialResult], str]) -> dict[str, dict]:
    groups: dict[str, list[float]] = {}
    for result in results:
        groups.setdefault(group_of(result), []).append(result.metrics["primary_metric"])
    summary = {name: {"mean_primary": statistics.fmean(values), "n": len(values), "recommended": False} for name, values in groups.items()}
    if summary:
        # First of equal means wins, so the choice follows run order.
        best = max(summary, key=lambda name: summary[name]["mean_primary"])
        summary[best]["recommended"] = True
    return summary


def _degenerate(primary: float, threshold: float) -> bool:
    return threshold > 0 and primary < threshold


def _check_names(field: str, names: tuple[str, ...], valid: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in valid]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"{field} must be distinct names from {', '.join(valid)}, got {list(names)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_unit_interval(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
