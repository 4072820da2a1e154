"""``validate-recombination``: a child against both of its parents."""

from __future__ import annotations

from core.validate import validate_recombination
from worker.runner import JobContext


def handle(context: JobContext) -> None:
    params = context.params
    child = context.checkpoint(params.child_id)
    parent_a = context.checkpoint(params.parent_a_id)
    parent_b = context.checkpoint(params.parent_b_id)
    states = context.states(params.states, child.arch.input_dim)
    context.progress(0.3, "comparing the child with both parents")
    report = validate_recombination(child, parent_a, parent_b, states, params.config())
    context.set_report(report | {"checkpoints": {"child": params.child_id, "parent_a": params.parent_a_id, "parent_b": params.parent_b_id}})
