"""``crossover``: combine two parents into a float child."""

from __future__ import annotations

import torch

from core import metrics
from core.crossover import crossover
from core.quantize import inference_forward
from core.states import DEFAULT_EVAL_STATES, synthetic_states
from worker.runner import JobContext, handles


@handles("crossover")
def handle(context: JobContext) -> None:
    params = context.params
    parent_a = context.checkpoint(params.parent_a_id)
    parent_b = context.checkpoint(params.parent_b_id)
    config = params.config()
    states = context.states(params.states, parent_a.arch.input_dim) if config.needs_states else None
    context.progress(0.3, f"crossover ({config.mode})")
    result = crossover(parent_a, parent_b, config, states, interrupt=context.interrupt)
    child_id = context.add_checkpoint(
        result.child,
        name=f"child-{config.mode}-a{config.alpha:g}",
        lineage=[(params.parent_a_id, "parent_a"), (params.parent_b_id, "parent_b")],
    )
    # A first look at the child on held-out states; validate-recombination gives the full picture.
    eval_states = torch.from_numpy(synthetic_states(DEFAULT_EVAL_STATES, parent_a.arch.input_dim))
    with torch.inference_mode():
        child_q, a_q, b_q = (
            inference_forward(checkpoint)(eval_states) for checkpoint in (result.child, parent_a, parent_b)
        )
    agreement = {
        "child_vs_parent_a_agreement": metrics.action_agreement(a_q, child_q),
        "child_vs_parent_b_agreement": metrics.action_agreement(b_q, child_q),
    }
    context.set_report(
        {
            "passed": bool(torch.isfinite(child_q).all()),
            "child_id": child_id,
            "parents": {"parent_a": params.parent_a_id, "parent_b": params.parent_b_id},
            "parent_formats": {"parent_a": parent_a.format, "parent_b": parent_b.format},
            "config": {
                "mode": config.mode,
                "alpha": config.alpha,
                "seed": config.seed,
                "granularity": config.granularity,
                "align_by": config.align_by,
            },
            "sources": result.sources,
            "permutations": [perm.tolist() for perm in result.permutations] if result.permutations else None,
            "matched_similarity": result.matched_similarity,
            "elapsed_seconds": result.elapsed_seconds,
            "held_out": agreement
            | {
                "primary_metric": min(agreement.values()),
                "states": {"synthetic": {"n_states": DEFAULT_EVAL_STATES.n_states, "seed": DEFAULT_EVAL_STATES.seed}},
            },
        }
    )
