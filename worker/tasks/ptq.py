"""``ptq``: int8 post-training quantization of a float checkpoint, validated against it."""

from __future__ import annotations

from core.quantize import quantize
from core.validate import validate_quantized
from worker.runner import JobContext


def handle(context: JobContext) -> None:
    params = context.params
    source = context.checkpoint(params.checkpoint_id)
    input_dim = source.arch.input_dim
    calibration = context.states(params.states, input_dim) if params.mode == "static" else None
    context.progress(0.2, f"quantizing ({params.mode})")
    result = quantize(source, params.config(), calibration)
    context.progress(0.6, "comparing int8 with float")
    validation = validate_quantized(source, result.checkpoint, context.states(params.eval_states, input_dim))
    output_id = context.add_checkpoint(result.checkpoint, name=f"{params.checkpoint_id}-int8-{params.mode}", lineage=[(params.checkpoint_id, "source")])
    context.set_report(
        {
            "passed": validation["passed"],
            "failed_checks": validation["failed_checks"],
            "source_checkpoint_id": params.checkpoint_id,
            "quantized_checkpoint_id": output_id,
            "quantization": {
                **result.checkpoint.quantization,
                "calibration_samples": result.calibration_samples,
                "float_param_bytes": result.float_param_bytes,
                "quantized_param_bytes": result.quantized_param_bytes,
                "elapsed_seconds": result.elapsed_seconds,
            },
            "validation": validation,
        }
    )
