"""``finetune``: tune a child toward a frozen reference (or two), optionally exporting int8."""

from __future__ import annotations

import dataclasses
import math

from core.finetune import finetune
from worker.runner import JobContext, handles


@handles("finetune")
def handle(context: JobContext) -> None:
    params = context.params
    child = context.checkpoint(params.checkpoint_id)
    reference_a = context.checkpoint(params.reference_id)
    reference_b = context.checkpoint(params.reference_b_id) if params.reference_b_id else None
    states = context.states(params.states, child.arch.input_dim)
    config = params.config()
    result = finetune(
        child,
        reference_a,
        states,
        config,
        reference_b,
        on_epoch=context.on_epoch(config.epochs, "fine-tuning"),
        interrupt=context.interrupt,
    )
    lineage = [(params.checkpoint_id, "source"), (params.reference_id, "reference")]
    if params.reference_b_id:
        lineage.append((params.reference_b_id, "reference_b"))
    tuned_id = context.add_checkpoint(result.child, name=f"{params.checkpoint_id}-finetuned", lineage=lineage)
    int8_id = (
        context.add_checkpoint(
            result.child_int8, name=f"{params.checkpoint_id}-finetuned-int8", lineage=[(tuned_id, "source")]
        )
        if result.child_int8
        else None
    )
    context.set_report(
        {
            "passed": all(math.isfinite(epoch.train_loss) for epoch in result.history),
            "finetuned_checkpoint_id": tuned_id,
            "int8_checkpoint_id": int8_id,
            "references": {"reference": params.reference_id, "reference_b": params.reference_b_id},
            "target": result.child.metadata["target"],
            "teacher_b_logit_scale": result.teacher_b_logit_scale,
            "config": dataclasses.asdict(config),
            "before": dataclasses.asdict(result.before) if result.before else None,
            "after": dataclasses.asdict(result.after) if result.after else None,
            "best_epoch": result.best_epoch,
            "states": {
                "training": "`states` less the validation split",
                "selection": f"the validation split ({params.val_fraction:.0%} of `states`): the best epoch, and the "
                "before/after figures",
                "report": "none here: judge the result with a validate job on held-out states",
            },
            "early_stopped": result.early_stopped,
            "curves": [dataclasses.asdict(epoch) for epoch in result.history],
            "elapsed_seconds": result.elapsed_seconds,
        }
    )
