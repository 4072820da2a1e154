"""``search``: fans trials out as ``search-trial`` child jobs, rung by rung, and ranks them.

Runs once per wake-up: it collects finished trials, starts the next ones (a
grid is one rung; halving promotes the best of each rung), publishes the
partial leaderboard on the job, and writes the report when the last rung is done.
"""

from __future__ import annotations

import dataclasses

import torch

from app.contracts.report_models import SearchTrialReport
from app.service.tables import JobStatus
from core.search import (
    TrialResult,
    halving_plan,
    parent_baselines,
    promote,
    ranked_rows,
    rung_work,
    search_report,
    search_states,
    trial_result_from_dict,
    trials,
)
from worker.runner import JobContext, handles

# A running search refreshes its partial leaderboard at most this often; it always wakes when a rung ends.
LEADERBOARD_INTERVAL_S = 1.0


@handles("search")
def handle(context: JobContext) -> None:
    params = context.params
    config = params.config()
    specs = trials(config)
    plan = halving_plan(config, specs)
    parent_a, parent_b = context.checkpoint(params.parent_a_id), context.checkpoint(params.parent_b_id)
    given = context.states(params.states, parent_a.arch.input_dim) if params.states is not None else None
    states = search_states(config, parent_a.arch.input_dim, params.n_states, given)
    baselines = parent_baselines(parent_a, parent_b, states) if config.include_parent_baseline else []
    children = context.children()
    latest: dict[int, TrialResult] = {}
    checkpoints: dict[int, str] = {}
    failed: dict[str, str] = {}
    survivors = [spec.index for spec in specs]
    for rung in plan:
        context.interrupt()
        to_run, rung_results = rung_work(rung, survivors, specs, latest)
        latest.update({result.index: result for result in rung_results})
        waiting, new_trials = False, []
        for spec in to_run:
            index, epochs = spec.index, rung.epochs_for(spec)
            key = f"rung{rung.index}/{spec.trial_id}"
            child = children.get(key)
            if child is None:
                trial = {
                    "parent_a_id": params.parent_a_id,
                    "parent_b_id": params.parent_b_id,
                    "search": dataclasses.asdict(config),
                }
                trial |= {"trial_index": index, "epochs": epochs, "rung": rung.index, "n_states": params.n_states}
                new_trials.append(
                    (
                        key,
                        "search-trial",
                        trial | ({"states": params.states.model_dump(exclude_none=True)} if params.states else {}),
                    )
                )
                waiting = True
            elif not child.finished:
                waiting = True
            elif child.status != JobStatus.succeeded:
                failed[key] = f"{child.status.value}: {child.error}"
            else:
                trial_report = SearchTrialReport.model_validate(child.result)
                latest[index] = trial_result_from_dict(trial_report.trial, spec)
                checkpoints[index] = trial_report.child_id
                rung_results.append(latest[index])
        context.spawn(new_trials)
        if waiting:
            done = sum(child.finished for child in children.values())
            rows = ranked_rows(
                [latest[index] for index in sorted(latest)], baselines, checkpoints, config.degenerate_threshold
            )
            context.set_summary({"rung": rung.index, "trials_done": done, "leaderboard": rows})
            context.progress(
                min(0.99, done / sum(r.n_trials for r in plan)),
                f"rung {rung.index + 1}/{len(plan)}: {done} trial jobs done",
            )
            context.wait_for_children(children, wake_interval_s=LEADERBOARD_INTERVAL_S)
        if not rung_results:
            raise RuntimeError(f"every trial of rung {rung.index} failed: {failed}")
        if not rung.final:
            survivors = promote(rung_results, config.eta)
    results = [latest[index] for index in sorted(latest)]
    epochs = sum(
        SearchTrialReport.model_validate(child.result).trial["finetune"]["epochs_run"]
        for child in children.values()
        if child.report
    )
    report = search_report(
        config, specs, plan, results, baselines, checkpoints, failed, len(children), epochs, torch.__version__
    )
    context.set_report(report | {"states": states.describe()})
