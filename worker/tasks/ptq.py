"""``ptq``: int8 post-training quantization of a float checkpoint."""

from __future__ import annotations

import torch

from core import metrics
from core.artifacts import encode
from core.quantize import inference_forward, quantize_dynamic
from worker.runner import JobContext

SCHEMA_VERSION = "1.0"
# Reference thresholds of the quantized-vs-float validator (latency is not gated).
MIN_ACTION_AGREEMENT = 0.75
MAX_MEAN_Q_ERROR = 0.5


def handle(context: JobContext) -> None:
    params = context.params
    source = context.checkpoint(params.checkpoint_id)
    states = torch.from_numpy(context.states(params.states, source.arch.input_dim))
    context.progress(0.2, f"quantizing ({params.mode})")
    result = quantize_dynamic(source, params.config())
    context.progress(0.6, "measuring fidelity")
    with torch.inference_mode():
        float_q = inference_forward(source)(states)
        int8_q = inference_forward(result.checkpoint)(states)
    fidelity = metrics.fidelity(float_q, int8_q)
    float_file_bytes, int8_file_bytes = len(encode(source)), len(encode(result.checkpoint))
    failed = [
        name
        for name, ok in (
            ("action_agreement", fidelity["action_agreement"] >= MIN_ACTION_AGREEMENT),
            ("mean_abs_q_error", fidelity["mae"] <= MAX_MEAN_Q_ERROR),
        )
        if not ok
    ]
    output_id = context.add_checkpoint(result.checkpoint, name=f"{params.checkpoint_id}-int8-{params.mode}", lineage=[(params.checkpoint_id, "source")])
    context.set_report(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "ptq",
            "passed": not failed,
            "failed_checks": failed,
            "thresholds": {"min_action_agreement": MIN_ACTION_AGREEMENT, "max_mean_q_error": MAX_MEAN_Q_ERROR},
            "source_checkpoint_id": params.checkpoint_id,
            "quantized_checkpoint_id": output_id,
            "quantization": {**result.checkpoint.quantization, "calibration_samples": result.calibration_samples, "elapsed_seconds": result.elapsed_seconds},
            "fidelity": fidelity,
            "size": {
                "float_param_bytes": result.float_param_bytes,
                "int8_param_bytes": result.quantized_param_bytes,
                "param_compression": result.float_param_bytes / result.quantized_param_bytes,
                "float_file_bytes": float_file_bytes,
                "int8_file_bytes": int8_file_bytes,
                "file_compression": float_file_bytes / int8_file_bytes,
            },
            "states": params.states.model_dump(exclude_none=True) | {"n_states": int(states.shape[0]), "input_dim": int(states.shape[1])},
            "torch_version": torch.__version__,
        }
    )
