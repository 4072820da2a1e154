"""``distill``: a teacher distilled into a smaller student."""

from __future__ import annotations

import dataclasses
import math

from core.distill import distill
from worker.runner import JobContext


def handle(context: JobContext) -> None:
    params = context.params
    teacher = context.checkpoint(params.teacher_id)
    states = context.states(params.states, teacher.arch.input_dim)
    config = params.config()
    result = distill(teacher, states, config, on_epoch=context.on_epoch(config.epochs, "distilling"))
    student_id = context.add_checkpoint(result.student, name=f"student-of-{params.teacher_id}", lineage=[(params.teacher_id, "teacher")])
    final = result.final
    notes = ["the teacher is int8: it was distilled through its dequantized weights"] if result.teacher_dequantized else []
    context.set_report(
        {
            "passed": math.isfinite(result.best_val_loss),
            "student_id": student_id,
            "teacher_id": params.teacher_id,
            "student_arch": result.student.arch.to_dict(),
            "config": dataclasses.asdict(config),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "held_out": {"action_agreement": final.action_agreement, "prob_similarity": final.prob_similarity, "val_loss": final.val_loss},
            "final_temperature": result.final_temperature,
            "teacher_dequantized": result.teacher_dequantized,
            "early_stopped": result.early_stopped,
            "curves": [dataclasses.asdict(epoch) for epoch in result.history],
            "elapsed_seconds": result.elapsed_seconds,
            "notes": notes,
        }
    )
