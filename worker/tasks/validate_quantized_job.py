"""``validate-quantized``: an int8 checkpoint against its float original (and optionally a teacher)."""

from __future__ import annotations

from core.validate import validate_quantized
from worker.runner import JobContext, handles


@handles("validate-quantized")
def handle(context: JobContext) -> None:
    params = context.params
    float_ckpt = context.checkpoint(params.float_id)
    quant_ckpt = context.checkpoint(params.quant_id)
    teacher = context.checkpoint(params.teacher_id) if params.teacher_id else None
    states = context.states(params.states, float_ckpt.arch.input_dim)
    context.progress(0.2, "measuring fidelity, latency, throughput and size")
    report = validate_quantized(
        float_ckpt,
        quant_ckpt,
        states,
        params.config(),
        teacher,
        context.actions(params.states),
        interrupt=context.interrupt,
    )
    report["held_out"] = report.pop("fidelity")
    context.set_report(
        report | {"checkpoints": {"float": params.float_id, "quantized": params.quant_id, "teacher": params.teacher_id}}
    )
