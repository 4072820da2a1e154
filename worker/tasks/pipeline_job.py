"""``pipeline``: the canonical dual-teacher run as child jobs; this task only schedules and summarises.

It runs once per wake-up: it starts every stage whose inputs are ready,
parks until a child finishes, and writes the master report when all are done.
"""

from __future__ import annotations

from app.service.tables import JobStatus
from core.artifacts import float_checkpoint
from core.networks import init_params
from worker.pipeline_report import master_report
from worker.runner import JobContext, handles


class StageFailed(RuntimeError):
    pass


@handles("pipeline")
def handle(context: JobContext) -> None:
    params = context.params
    parent_a, parent_b = params.parent_a_id, params.parent_b_id
    if params.parent_seeds is not None:
        arch = params.arch.to_arch()
        parent_a, parent_b = (
            context.persist_checkpoint(
                float_checkpoint(init_params(arch, seed), arch), name=f"parent-{side}-seed{seed}", output_index=index
            )
            for index, (side, seed) in enumerate(zip("AB", params.parent_seeds, strict=True))
        )
    children = context.children()
    for key, child in children.items():
        if child.status in (JobStatus.failed, JobStatus.cancelled):
            raise StageFailed(f"stage {key} ({child.kind}) {child.status.value}: {child.error or 'no error recorded'}")
    succeeded = {
        key: child.output_checkpoint_ids for key, child in children.items() if child.status == JobStatus.succeeded
    }
    context.spawn(
        [
            (stage.key, stage.kind, params.stage_params(stage, parent_a, parent_b, succeeded))
            for stage in params.stages
            if stage.key not in children and all(dependency in succeeded for dependency in stage.after)
        ]
    )
    if len(succeeded) < len(params.stages):
        running = [key for key, child in children.items() if not child.finished]
        context.progress(
            len(succeeded) / len(params.stages),
            f"{len(succeeded)}/{len(params.stages)} stages done; running {', '.join(running) or 'next'}",
        )
        context.wait_for_children(children)
    context.set_report(master_report(children, parent_a, parent_b))
