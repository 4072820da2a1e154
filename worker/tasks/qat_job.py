"""``qat``: quantization-aware training toward a teacher, converted to a real int8 checkpoint."""

from __future__ import annotations

import dataclasses
import math

from core.qat import qat
from worker.runner import JobContext, handles


@handles("qat")
def handle(context: JobContext) -> None:
    params = context.params
    student = context.checkpoint(params.checkpoint_id)
    teacher = context.checkpoint(params.teacher_id)
    states = context.states(params.states, student.arch.input_dim)
    result = qat(
        student,
        teacher,
        states,
        params.config(),
        on_epoch=context.on_epoch(params.epochs, "QAT"),
        interrupt=context.interrupt,
    )
    lineage = [(params.checkpoint_id, "source"), (params.teacher_id, "teacher")]
    int8_id = (
        context.add_checkpoint(result.quantized, name=f"{params.checkpoint_id}-qat-int8", lineage=lineage)
        if result.quantized
        else None
    )
    float_id = context.add_checkpoint(result.checkpoint, name=f"{params.checkpoint_id}-qat-float", lineage=lineage)
    training = result.training
    best = training.history[training.best_epoch - 1] if training.best_epoch > 0 else training.initial
    context.set_report(
        {
            "passed": math.isfinite(training.best_val_loss) and (result.quantized is not None or not params.convert),
            "int8_checkpoint_id": int8_id,
            "float_qat_checkpoint_id": float_id,
            "teacher_id": params.teacher_id,
            "student_id": params.checkpoint_id,
            "config": dataclasses.asdict(params.config()),
            "float_param_bytes": result.float_param_bytes,
            "int8_param_bytes": result.quantized_param_bytes,
            "best_epoch": training.best_epoch,
            "states": {
                "training": "`states` less the validation split",
                "selection": f"the validation split ({params.val_fraction:.0%} of `states`): the best epoch, and the "
                "before/after figures",
                "report": "none here: judge the result with a validate job on held-out states",
            },
            "best": dataclasses.asdict(best) if best else None,
            "initial": dataclasses.asdict(training.initial) if training.initial else None,
            "curves": [dataclasses.asdict(epoch) for epoch in training.history],
            "elapsed_seconds": result.elapsed_seconds,
            "notes": ["validation figures are computed with the fake-quantized (int8) weights"],
        }
    )
