"""``search-trial``: one crossover -> fine-tune -> evaluation of a search, as its own job."""

from __future__ import annotations

import math

from core.search import run_trial, search_states, trials
from worker.runner import JobContext, handles


@handles("search-trial")
def handle(context: JobContext) -> None:
    params = context.params
    config = params.search_config()
    spec = trials(config)[params.trial_index]
    parent_a = context.checkpoint(params.parent_a_id)
    parent_b = context.checkpoint(params.parent_b_id)
    input_dim = parent_a.arch.input_dim
    given = context.states(params.states, input_dim) if params.states is not None else None
    states = search_states(config, input_dim, params.n_states, given)
    on_epoch = context.on_epoch(params.epochs, f"trial {spec.trial_id} (rung {params.rung})")
    result = run_trial(
        parent_a,
        parent_b,
        spec,
        states,
        epochs=params.epochs,
        rung=params.rung,
        on_epoch=on_epoch,
        interrupt=context.interrupt,
    )
    assert result.child is not None  # a trial just run holds its child (only a rebuilt result has none)
    parents = [(params.parent_a_id, "parent_a"), (params.parent_b_id, "parent_b")]
    child_id = context.add_checkpoint(result.child, name=f"{spec.trial_id}-e{params.epochs}", lineage=parents)
    int8_id = (
        context.add_checkpoint(
            result.child_int8, name=f"{spec.trial_id}-e{params.epochs}-int8", lineage=[(child_id, "source")]
        )
        if result.child_int8 is not None
        else None
    )
    context.set_report(
        {
            "passed": math.isfinite(result.metrics["primary_metric"]),
            "child_id": child_id,
            "child_int8_id": int8_id,
            "trial": result.to_dict(),
        }
    )
