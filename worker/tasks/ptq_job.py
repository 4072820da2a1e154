"""``ptq``: int8 post-training quantization of a float checkpoint, validated against it."""

from __future__ import annotations

from core.quantize import quantize
from core.validate import validate_quantized
from worker.runner import JobContext, handles


@handles("ptq")
def handle(context: JobContext) -> None:
    params = context.params
    source = context.checkpoint(params.checkpoint_id)
    input_dim = source.arch.input_dim
    calibration = context.states(params.states, input_dim) if params.mode == "static" else None
    context.progress(0.2, f"quantizing ({params.mode})")
    result = quantize(source, params.config(), calibration, interrupt=context.interrupt)
    context.progress(0.6, "comparing int8 with float")
    validation = validate_quantized(
        source, result.checkpoint, context.states(params.eval_states, input_dim), interrupt=context.interrupt
    )
    output_id = context.add_checkpoint(
        result.checkpoint, name=f"{params.checkpoint_id}-int8-{params.mode}", lineage=[(params.checkpoint_id, "source")]
    )
    # The validation's fields are the report's own, as in validate-quantized; one section says how it was made.
    validation["held_out"] = validation.pop("fidelity")
    context.set_report(
        validation
        | {
            "source_checkpoint_id": params.checkpoint_id,
            "quantized_checkpoint_id": output_id,
            "quantization": validation["quantization"]
            | result.checkpoint.quantization
            | {
                "calibration_samples": result.calibration_samples,
                "float_param_bytes": result.float_param_bytes,
                "quantized_param_bytes": result.quantized_param_bytes,
                "elapsed_seconds": result.elapsed_seconds,
            },
        }
    )
