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
- Fine-tuning, selection and evaluation use three disjoint state draws
  (``search_states``): halving promotions, the leaderboard's order, the
  winner and the recommendation are chosen on the selection states, and the
  figures reported are measured on the evaluation states, which no choice
  looks at. Parent baselines are ranked together with the children.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from core.artifacts import Checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    CROSSOVER_MODES,
    CUSTOM_FIELDS,
    MAX_ETA,
    MAX_GRID_VALUES,
    MAX_TRIALS,
    PRESET_NAMES,
    PRESETS,
    UNUSED_ALPHA,
    FinetuneTarget,
    Preset,
    Rung,
    Scheduler,
    SearchConfig,
    TrialSpec,
    halving_plan,
    trials,
)
from core.crossover import crossover
from core.finetune import REGIMES, finetune
from core.interrupt import Interrupt, checker
from core.states import SyntheticStates, derive_seed, synthetic_states, validate_states
from core.threads import single_threaded
from core.training import EpochMetrics
from core.validate import RecombinationValidationConfig, validate_recombination

EVALUATION = RecombinationValidationConfig(report_only=True)


@dataclass(frozen=True)
class SearchStates:
    """The three disjoint state sets of a search, each ``(n, input_dim)`` float32.

    ``train`` is what children are fine-tuned on (and ``aligned`` recipes
    match units on); ``selection`` is what every choice is made on (halving
    promotions, the leaderboard's order, the winner, the recommendation);
    ``evaluation`` is what the reported figures are measured on, and no
    choice ever looks at it.
    """

    train: np.ndarray
    selection: np.ndarray
    evaluation: np.ndarray

    def describe(self) -> dict[str, str]:
        return {
            "train": f"{len(self.train)} states: fine-tuning (and unit matching for aligned recipes)",
            "selection": f"{len(self.selection)} states: halving promotions, ranking, the winner and the "
            "recommendation",
            "evaluation": f"{len(self.evaluation)} states: every reported figure; no choice looks at them",
        }


def search_states(
    config: SearchConfig,
    input_dim: int,
    n_states: int = 1000,
    train_states: np.ndarray | torch.Tensor | None = None,
) -> SearchStates:
    """The search's train, selection and evaluation states.

    Each is a standard-normal draw from its own seed derived from
    ``config.seed`` (the reference scores on its fine-tune buffer and ranks on
    what it reports). Given ``train_states`` (an uploaded buffer) are
    validated and used for fine-tuning as they are; ``n_states`` selection
    and evaluation states are drawn either way.
    """
    if train_states is None:
        train = synthetic_states(SyntheticStates(n_states, derive_seed(config.seed, "search/train_states")), input_dim)
    else:
        train = validate_states(np.asarray(train_states), input_dim)
    selection = synthetic_states(
        SyntheticStates(n_states, derive_seed(config.seed, "search/selection_states")), input_dim
    )
    evaluation = synthetic_states(SyntheticStates(n_states, derive_seed(config.seed, "search/eval_states")), input_dim)
    return SearchStates(train, selection, evaluation)


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
    evaluation states (reported, never chosen on); ``selection_metrics``
    ``primary_metric``, both agreements and ``oracle_agreement`` on the
    selection states (what promotions and ranking use); ``finetune`` the fine-tune record (validation loss and
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
    selection_metrics: dict[str, float]
    finetune: dict[str, Any]
    durations: dict[str, float]
    report: dict

    @property
    def selection_primary(self) -> float:
        return self.selection_metrics["primary_metric"]

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
            "selection_metrics": dict(self.selection_metrics),
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
        selection_metrics=dict(data["selection_metrics"]),
        finetune=dict(data["finetune"]),
        durations=dict(data["durations"]),
        report=data["report"],
    )


@single_threaded
def run_trial(
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    spec: TrialSpec,
    states: SearchStates,
    *,
    epochs: int | None = None,
    rung: int = 0,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> TrialResult:
    """Cross over, fine-tune on ``states.train``, and score on ``states.selection`` and ``states.evaluation``.

    Parents may be float32 or int8 (crossover dequantizes them). ``aligned``
    recipes match units on the training states. ``epochs`` overrides the
    regime's epochs (a halving rung); ``rung`` is recorded in the result.
    ``on_epoch`` (progress) and ``interrupt`` (``core.interrupt``) reach the
    crossover, the fine-tune loop and the evaluations.
    Same inputs give bit-identical children and metrics.
    """
    started = time.perf_counter()
    train = validate_states(np.asarray(states.train), parent_a.arch.input_dim)
    crossed = crossover(
        parent_a, parent_b, spec.crossover, states=train if spec.crossover.needs_states else None, interrupt=interrupt
    )
    crossed_at = time.perf_counter()
    config = spec.finetune if epochs is None else dataclasses.replace(spec.finetune, epochs=epochs)
    tuned = finetune(
        crossed.child, parent_a, train, config, reference_b=parent_b, on_epoch=on_epoch, interrupt=interrupt
    )
    tuned_at = time.perf_counter()
    lineage = {
        **tuned.child.metadata,
        "stage": "search_trial",
        **spec.to_dict(),
        "finetune": dataclasses.asdict(config),
    }
    child = dataclasses.replace(tuned.child, metadata=lineage)
    child_int8 = dataclasses.replace(tuned.child_int8, metadata=lineage) if tuned.child_int8 is not None else None
    evaluated = child_int8 if child_int8 is not None else child
    selection = validate_recombination(
        evaluated, parent_a, parent_b, states.selection, EVALUATION, interrupt=interrupt
    )["summary"]
    report = validate_recombination(evaluated, parent_a, parent_b, states.evaluation, EVALUATION, interrupt=interrupt)
    finished = time.perf_counter()
    return TrialResult(
        spec=spec,
        epochs=config.train_config().epochs,
        rung=rung,
        child=child,
        child_int8=child_int8,
        evaluated_format=evaluated.format,
        metrics=_reported_figures(report),
        selection_metrics=_selection_figures(selection),
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


def _reported_figures(report: dict) -> dict[str, float]:
    """A trial's (or a parent's) figures on the evaluation states, from its ``validate_recombination`` report."""
    summary, versus_a, versus_b = (
        report["summary"],
        report["comparisons"]["child_vs_parent_a"],
        report["comparisons"]["child_vs_parent_b"],
    )
    return {
        "primary_metric": summary["primary_metric"],
        "child_vs_parent_a_agreement": versus_a["action_agreement"],
        "child_vs_parent_b_agreement": versus_b["action_agreement"],
        "oracle_agreement": summary["oracle_agreement"],
        "bound_fraction": summary["bound_fraction"],
        "kl_divergence_a": versus_a["kl_divergence"],
        "kl_divergence_b": versus_b["kl_divergence"],
        "mse_a": versus_a["mse"],
        "mse_b": versus_b["mse"],
        "cosine_a": versus_a["mean_cosine_similarity"],
        "cosine_b": versus_b["mean_cosine_similarity"],
    }


def _selection_figures(summary: dict) -> dict[str, float]:
    return {
        "primary_metric": summary["primary_metric"],
        "child_vs_parent_a_agreement": summary["child_agrees_with_parent_a"],
        "child_vs_parent_b_agreement": summary["child_agrees_with_parent_b"],
        "oracle_agreement": summary["oracle_agreement"],
    }


def parent_baselines(parent_a: Checkpoint, parent_b: Checkpoint, states: SearchStates) -> list[dict]:
    """Both parents scored as if they were children, on the trials' selection and evaluation states.

    Parent A agrees with A fully, so its primary metric is its agreement with
    B; parent B is the mirror. These are the rows a child has to beat to be
    worth more than keeping a parent. Rows have the leaderboard's columns
    without ``rank`` and ``degenerate``.
    """
    rows = []
    for name, parent in (("parent_a", parent_a), ("parent_b", parent_b)):
        selection = validate_recombination(parent, parent_a, parent_b, states.selection, EVALUATION)["summary"]
        report = validate_recombination(parent, parent_a, parent_b, states.evaluation, EVALUATION)
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
                "selection_primary_metric": selection["primary_metric"],
                **_reported_figures(report),
            }
        )
    return rows


def leaderboard(
    results: Sequence[TrialResult], baselines: Sequence[dict], degenerate_threshold: float = 0.0
) -> list[dict]:
    """Children and parent baselines ranked together by their primary metric on the selection states, best first.

    Each row reports its figures on the evaluation states (``primary_metric``
    and the rest) beside the selection figure it was ranked by
    (``selection_primary_metric``), so the order is not chosen on the
    figures it shows. Ties go to the lower trial index, and parents come
    after children they tie with; ranks are 1..n in that order.
    ``degenerate`` is ``primary_metric < degenerate_threshold`` (never with
    threshold 0). With halving, pass each trial's latest result: a row's
    ``epochs`` and ``rung`` say how far it was trained.
    """
    rows = [_child_row(result) for result in results] + [dict(row) for row in baselines]
    rows.sort(
        key=lambda row: (
            -row["selection_primary_metric"],
            row["is_parent_baseline"],
            row["index"] or 0,
            row["trial_id"],
        )
    )
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["degenerate"] = _degenerate(row["primary_metric"], degenerate_threshold)
    return rows


def ranked_rows(
    results: Sequence[TrialResult],
    baselines: Sequence[dict],
    checkpoint_ids: dict[int, str],
    degenerate_threshold: float = 0.0,
) -> list[dict]:
    """``leaderboard`` rows, each child's naming its trial's stored checkpoint (``checkpoint_ids`` by trial index)."""
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
        "winner": None
        if best is None
        else {
            "trial_id": best["trial_id"],
            "checkpoint_id": best["checkpoint_id"],
            "primary_metric": best["primary_metric"],
            "selection_primary_metric": best["selection_primary_metric"],
        },
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


def manifest(
    config: SearchConfig, specs: Sequence[TrialSpec], results: Sequence[TrialResult], torch_version: str
) -> list[dict]:
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
                "degenerate": None
                if result is None
                else _degenerate(result.metrics["primary_metric"], config.degenerate_threshold),
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
    The recommended mode and regime are those with the best mean on the
    selection states (``mean_selection_primary``); ``mean_primary`` is the
    reported mean on the evaluation states.
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
    spread: dict[tuple[float, str], dict[int | None, float]] = {}
    for result in complete:
        if result.spec.crossover.mode == "random":
            group = spread.setdefault((result.spec.crossover.alpha, result.spec.regime), {})
            group[result.spec.crossover.seed] = result.metrics["primary_metric"]
    baseline = parent_rows[0]["primary_metric"] if parent_rows else None
    best = child_rows[0] if child_rows else None
    # The A-vs-B agreement; the winner beats keeping a parent if it was chosen over them on the selection states.
    return {
        "n_children": len(child_rows),
        "n_degenerate": sum(row["degenerate"] for row in child_rows),
        "best_child": best,
        "top_3": [row["trial_id"] for row in child_rows[:3]],
        "best_row_is_parent": bool(rows) and rows[0]["is_parent_baseline"],
        "parents_agreement": baseline,
        "best_child_beats_parents": None
        if best is None or not parent_rows
        else best["primary_metric"] > max(row["primary_metric"] for row in parent_rows),
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


def promote(rung_results: Sequence[TrialResult], eta: int) -> list[int]:
    """Indices of the best ``ceil(n / eta)`` results of each regime by primary metric on the selection states (ties:
    lower index), in index order.

    Each regime is ranked on its own (see ``halving_plan``), so every regime
    keeps at least one trial.
    """
    by_regime: dict[str, list[TrialResult]] = {}
    for result in rung_results:
        by_regime.setdefault(result.spec.regime, []).append(result)
    promoted: list[int] = []
    for results in by_regime.values():
        ranked = sorted(results, key=lambda result: (-result.selection_primary, result.index))
        promoted.extend(result.index for result in ranked[: math.ceil(len(results) / eta)])
    return sorted(promoted)


def rung_work(
    rung: Rung, survivors: Sequence[int], specs: Sequence[TrialSpec], latest: dict[int, TrialResult]
) -> tuple[list[TrialSpec], list[TrialResult]]:
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
    states: SearchStates,
    interrupt: Interrupt | None = None,
) -> SearchRun:
    """Run every trial of ``config`` serially, rung by rung (``halving_plan``).

    The worker runs the same plan with one job per trial; this is the
    in-process form for notebooks, tests and benchmarks. ``interrupt``
    (``core.interrupt``) runs before each trial and inside it.
    """
    check = checker(interrupt)
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
            check()
            result = run_trial(
                parent_a, parent_b, spec, states, epochs=rung.epochs_for(spec), rung=rung.index, interrupt=check
            )
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
        "selection_primary_metric": result.selection_primary,
        **result.metrics,
    }


def _mean_primary(results: Sequence[TrialResult], group_of: Callable[[TrialResult], str]) -> dict[str, dict]:
    groups: dict[str, list[TrialResult]] = {}
    for result in results:
        groups.setdefault(group_of(result), []).append(result)
    summary = {
        name: {
            "mean_primary": statistics.fmean(result.metrics["primary_metric"] for result in members),
            "mean_selection_primary": statistics.fmean(result.selection_primary for result in members),
            "n": len(members),
            "recommended": False,
        }
        for name, members in groups.items()
    }
    if summary:
        # Chosen on the selection states; the first of equal means wins, so the choice follows run order.
        best = max(summary, key=lambda name: summary[name]["mean_selection_primary"])
        summary[best]["recommended"] = True
    return summary


def _degenerate(primary: float, threshold: float) -> bool:
    return threshold > 0 and primary < threshold
