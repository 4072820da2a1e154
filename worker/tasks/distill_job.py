"""``distill``: a teacher distilled into a smaller student."""

from __future__ import annotations

import dataclasses
import math

import torch

from core import metrics
from core.distill import distill
from core.quantize import inference_forward
from worker.runner import JobContext, handles


@handles("distill")
def handle(context: JobContext) -> None:
    params = context.params
    teacher = context.checkpoint(params.teacher_id)
    states = context.states(params.states, teacher.arch.input_dim)
    eval_states = context.states(params.eval_states, teacher.arch.input_dim)
    config = params.config()
    result = distill(
        teacher, states, config, on_epoch=context.on_epoch(config.epochs, "distilling"), interrupt=context.interrupt
    )
    student_id = context.add_checkpoint(
        result.student, name=f"student-of-{params.teacher_id}", lineage=[(params.teacher_id, "teacher")]
    )
    with torch.inference_mode():
        held_out = metrics.fidelity(
            inference_forward(teacher)(eval_states), inference_forward(result.student)(eval_states)
        )
    selected = result.final
    notes = (
        ["the teacher is int8: it was distilled through its dequantized weights"] if result.teacher_dequantized else []
    )
    context.set_report(
        {
            "passed": math.isfinite(result.best_val_loss),
            "student_id": student_id,
            "teacher_id": params.teacher_id,
            "student_arch": result.student.arch.to_dict(),
            "config": dataclasses.asdict(config),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "selection": {
                "action_agreement": selected.action_agreement,
                "prob_similarity": selected.prob_similarity,
                "val_loss": selected.val_loss,
            },
            "held_out": held_out,
            "states": {
                "training": "`states` less the validation split",
                "selection": f"the validation split ({config.val_fraction:.0%} of `states`): the best epoch, and the "
                "figures under `selection`",
                "report": f"`eval_states` ({held_out['n_states']} states): the figures under `held_out`",
            },
            "final_temperature": result.final_temperature,
            "teacher_dequantized": result.teacher_dequantized,
            "early_stopped": result.early_stopped,
            "curves": [dataclasses.asdict(epoch) for epoch in result.history],
            "elapsed_seconds": result.elapsed_seconds,
            "notes": notes,
        }
    )
