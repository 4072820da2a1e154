"""``evolve-child``: one child of an evolution (crossover, mutation, fine-tune, fitness), as its own job."""

from __future__ import annotations

from core.evolve import ChildSpec, run_child
from worker.evolution import evolution_states
from worker.runner import JobContext, handles


@handles("evolve-child")
def handle(context: JobContext) -> None:
    params = context.params
    config = params.evolve_config()
    spec = ChildSpec.from_dict(params.child)
    parent_a, parent_b = context.checkpoint(params.parent_a_id), context.checkpoint(params.parent_b_id)
    targets = [context.checkpoint(target_id) for target_id in params.target_ids]
    states = evolution_states(context, config, parent_a.arch.input_dim)
    on_epoch = context.on_epoch(config.epochs_per_child, f"child {spec.member_id}")
    member = run_child(
        spec, parent_a, parent_b, targets, states, config, on_epoch=on_epoch, interrupt=context.interrupt
    )
    assert member.checkpoint is not None
    child_id = context.add_checkpoint(
        member.checkpoint,
        name=f"evolve-{spec.member_id}",
        lineage=[(params.parent_a_id, "parent_a"), (params.parent_b_id, "parent_b")],
    )
    context.set_report({"passed": True, "child_id": child_id, "member": member.to_dict()})
