"""``validate-recombination``: a child against both of its parents."""

from __future__ import annotations

from core.validate import validate_recombination
from worker.runner import JobContext, handles


@handles("validate-recombination")
def handle(context: JobContext) -> None:
    params = context.params
    child = context.checkpoint(params.child_id)
    parent_a = context.checkpoint(params.parent_a_id)
    parent_b = context.checkpoint(params.parent_b_id)
    states = context.states(params.states, child.arch.input_dim)
    context.progress(0.3, "comparing the child with both parents")
    report = validate_recombination(
        child, parent_a, parent_b, states, params.config(), context.actions(params.states), interrupt=context.interrupt
    )
    summary = report.pop("summary")
    report["held_out"] = {
        "child_vs_parent_a_agreement": summary.pop("child_agrees_with_parent_a"),
        "child_vs_parent_b_agreement": summary.pop("child_agrees_with_parent_b"),
        **summary,
    }
    context.set_report(
        report
        | {"checkpoints": {"child": params.child_id, "parent_a": params.parent_a_id, "parent_b": params.parent_b_id}}
    )
