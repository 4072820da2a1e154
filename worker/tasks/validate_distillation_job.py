"""``validate-distillation``: a student against its teacher on held-out states."""

from __future__ import annotations

from core.validate import validate_distillation
from worker.runner import JobContext, handles


@handles("validate-distillation")
def handle(context: JobContext) -> None:
    params = context.params
    student = context.checkpoint(params.student_id)
    teacher = context.checkpoint(params.teacher_id)
    states = context.states(params.states, teacher.arch.input_dim)
    context.progress(0.2, "comparing the student with its teacher")
    report = validate_distillation(
        teacher, student, states, params.config(), context.actions(params.states), interrupt=context.interrupt
    )
    # Greedy rollouts are not held-out figures: the report keeps them once, as ``rollout``.
    report["held_out"] = {name: value for name, value in report.pop("metrics").items() if name != "rollout"}
    context.set_report(report | {"checkpoints": {"teacher": params.teacher_id, "student": params.student_id}})
