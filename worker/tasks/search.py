"""``search``: fans trials out as ``search-trial`` child jobs, rung by rung, and ranks them.

Runs once per wake-up: it collects finished trials, starts the next ones (a
grid is one rung; halving promotes the best of each rung), publishes the
partial leaderboard on the job, and writes the report when the last rung is done.
"""

from __future__ import annotations

import dataclasses

import torch

from app.models import JobStatus
from core.search import TrialResult, halving_plan, leaderboard, manifest, parent_baselines, promote, recommendation, search_states, trial_result_from_dict, trials
from worker.runner import JobContext

# A running search refreshes its partial leaderboard at most this often; it always wakes when a rung ends.
LEADERBOARD_INTERVAL_S = 1.0


def handle(context: JobContext) -> None:
    params = context.params
    config = params.config()
    specs = trials(config)
    plan = halving_plan(config, specs)
    parent_a, parent_b = context.checkpoint(params.parent_a_id), context.checkpoint(params.parent_b_id)
    given = context.states(params.states, parent_a.arch.input_dim) if params.states is not None else None
    _, eval_states = search_states(config, parent_a.arch.input_dim, params.n_states, given)
    baselines = parent_baselines(parent_a, parent_b, eval_states) if config.include_parent_baseline else []
    children = context.children()
    latest: dict[int, TrialResult] = {}
    checkpoints: dict[int, str] = {}
    failed: dict[str, str] = {}
    survivors = [spec.index for spec in specs]
    for rung in plan:
        waiting, rung_results = False, []
        # Longest trials first: with several workers the rung then ends sooner (longest-processing-time order).
        for index in sorted(survivors, key=lambda index: (-rung.epochs_for(specs[index]), index)):
            spec, epochs = specs[index], rung.epochs_for(specs[index])
            previous = latest.get(index)
            if previous is not None and previous.epochs == epochs:  # no more epochs in this rung: keep the result
                latest[index] = dataclasses.replace(previous, rung=rung.index)
                rung_results.append(latest[index])
                continue
            key = f"rung{rung.index}/{spec.trial_id}"
            child = children.get(key)
            if child is None:
                trial = {"parent_a_id": params.parent_a_id, "parent_b_id": params.parent_b_id, "search": dataclasses.asdict(config)}
                trial |= {"trial_index": index, "epochs": epochs, "rung": rung.index, "n_states": params.n_states}
                context.spawn(key, "search-trial", trial | ({"states": params.states.model_dump(exclude_none=True)} if params.states else {}))
                waiting = True
            elif not child.finished:
                waiting = True
            elif child.status != JobStatus.succeeded:
                failed[key] = f"{child.status.value}: {child.error}"
            else:
                latest[index] = trial_result_from_dict(child.report["trial"], spec)
                checkpoints[index] = child.report["child_id"]
                rung_results.append(latest[index])
        if waiting:
            done = sum(child.finished for child in children.values())
            context.set_summary({"rung": rung.index, "trials_done": done, "leaderboard": _rows(latest, baselines, checkpoints, config)})
            context.progress(min(0.99, done / sum(r.n_trials for r in plan)), f"rung {rung.index + 1}/{len(plan)}: {done} trial jobs done")
            context.wait_for_children(children, wake_interval_s=LEADERBOARD_INTERVAL_S)
        if not rung_results:
            raise RuntimeError(f"every trial of rung {rung.index} failed: {failed}")
        if not rung.final:
            survivors = promote(rung_results, config.eta)
    context.set_report(_report(config, specs, plan, latest, baselines, checkpoints, failed, children))


def _rows(latest: dict[int, TrialResult], baselines: list[dict], checkpoints: dict[int, str], config) -> list[dict]:
    rows = leaderboard([latest[index] for index in sorted(latest)], baselines, config.degenerate_threshold)
    for row in rows:
        row["checkpoint_id"] = checkpoints.get(row["index"]) if not row["is_parent_baseline"] else None
    return rows


def _report(config, specs, plan, latest, baselines, checkpoints, failed, children) -> dict:
    results = [latest[index] for index in sorted(latest)]
    rows = _rows(latest, baselines, checkpoints, config)
    entries = manifest(config, specs, results, torch.__version__)
    for entry in entries:
        entry["checkpoint_id"] = checkpoints.get(entry["index"])
    best = next((row for row in rows if not row["is_parent_baseline"]), None)
    trial_reports = [child.report["trial"] for child in children.values() if child.report and "trial" in child.report]
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
            "trial_jobs": len(children),
            "total_finetune_epochs": sum(report["finetune"]["epochs_run"] for report in trial_reports),
            "stopped_at_rung": {result.trial_id: result.rung for result in results},
        },
        "failed_trials": failed,
        "config": dataclasses.asdict(config),
    }
