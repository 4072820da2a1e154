"""Int8 post-training quantization and the int8 inference path.

Weights are quantized symmetrically (zero point 0) to int8, per tensor or per
output channel: ``scale = max|W| / 127``, ``W_q = clamp(round(W / scale), -128, 127)``
with rounding half to even. Biases and LayerNorm parameters stay float32.

``dynamic`` (the default) is weight-only: activations stay float.
``static`` also quantizes the input of every Linear to uint8 with an affine
per-tensor scheme calibrated on states (min/max observer)::

    x_q = clamp(round(x * (1 / input_scale)) + input_zero_point, 0, 255)

and each Linear computes ``(x_q - zp) @ W_q^T`` exactly in integers, then
``acc * (input_scale * weight_scale) + bias`` in float32. LayerNorm and the
activation stay float (the reference's static mode quantizes LayerNorm too).
Every Linear of the layer list is quantized, whatever the depth. Both results
are stored in the backend-free format of ``core.artifacts``.

Serving: on these tiny networks no int8 kernel available on CPU beats a float
``addmm`` (the time goes to per-call overhead, not arithmetic; see
``bench/bench_quantize.py``), so the int8 path keeps the int8 values in float32
tensors and uses float kernels. Products of int8 and uint8 values summed over
fewer than 518 inputs stay below 2**24, so the float32 accumulation of a static
Linear is exactly the int32 one for layers up to 517 inputs wide (wider ones
round like any float32 sum). The artifact stays int8; only the kernel is float.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.artifacts import Checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    MAX_CALIBRATION_BATCHES,
    Granularity,
    PTQConfig,
    QuantizationMode,
)
from core.interrupt import Interrupt, checker
from core.networks import make_forward
from core.states import validate_states
from core.threads import single_threaded

INT8_MIN, INT8_MAX = -128, 127
UINT8_MIN, UINT8_MAX = 0, 255
SCALE_FLOOR = 1e-8


@dataclass(frozen=True)
class PTQResult:
    """An int8 checkpoint and what it cost; ``calibration_samples`` is 0 for dynamic."""

    checkpoint: Checkpoint
    float_param_bytes: int
    quantized_param_bytes: int
    calibration_samples: int
    elapsed_seconds: float


def weight_scale(weight: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """Symmetric int8 scale, shape ``[1]`` (per tensor) or ``[out]`` (per channel)."""
    max_abs = weight.abs().amax(dim=1) if granularity == "per_channel" else weight.abs().max().reshape(1)
    return (max_abs.clamp_min(SCALE_FLOOR) / INT8_MAX).to(torch.float32)


def quantize_weight(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``clamp(round(W / scale), -128, 127)`` as int8; ``scale`` broadcasts over rows."""
    return torch.clamp(torch.round(weight / scale.unsqueeze(1)), INT8_MIN, INT8_MAX).to(torch.int8)


def dequantize_weight(weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return weight_int8.to(torch.float32) * scale.unsqueeze(1)


def activation_qparams(min_value: float, max_value: float) -> tuple[float, int]:
    """Affine uint8 ``(scale, zero_point)`` covering ``[min(min_value, 0), max(max_value, 0)]``.

    The range always contains 0 so that 0 (every ReLU zero) is exact; the
    scale is a float32 value, the zero point an integer in [0, 255].
    """
    low, high = min(float(min_value), 0.0), max(float(max_value), 0.0)
    scale = float(np.float32(max((high - low) / (UINT8_MAX - UINT8_MIN), SCALE_FLOOR)))
    zero_point = int(np.clip(round(UINT8_MIN - low / scale), UINT8_MIN, UINT8_MAX))
    return scale, zero_point


def quantize(
    checkpoint: Checkpoint,
    config: PTQConfig = PTQConfig(),
    calibration_states: torch.Tensor | np.ndarray | None = None,
    interrupt: Interrupt | None = None,
) -> PTQResult:
    """Quantize a float checkpoint in ``config.mode`` (static needs ``calibration_states``; ``interrupt`` runs per
    calibration batch).
    """
    if config.mode == "static":
        return quantize_static(checkpoint, calibration_states, config, interrupt)
    return quantize_dynamic(checkpoint, config)


def quantize_dynamic(checkpoint: Checkpoint, config: PTQConfig = PTQConfig()) -> PTQResult:
    """Weight-only int8 quantization of a float checkpoint (no calibration)."""
    _check_ptq_inputs(checkpoint, config, "dynamic")
    started = time.perf_counter()
    quantized = _with_int8_weights(checkpoint, config.granularity, {"mode": "dynamic", "activations": "float32"})
    return PTQResult(quantized, checkpoint.param_bytes, quantized.param_bytes, 0, time.perf_counter() - started)


@single_threaded
def quantize_static(
    checkpoint: Checkpoint,
    calibration_states: torch.Tensor | np.ndarray | None,
    config: PTQConfig = PTQConfig(mode="static"),
    interrupt: Interrupt | None = None,
) -> PTQResult:
    """Int8 weights plus uint8 activations calibrated on ``calibration_states``.

    ``calibration_states`` is ``(n, input_dim)`` float. The first
    ``min(n, calibration_batches * calibration_batch_size)`` rows are read once,
    without wrapping around (the min/max of consecutive batches is the min/max
    of their union), and that count is ``calibration_samples``; ``interrupt``
    (``core.interrupt``) is called before each batch. Each Linear's
    float input range gives its ``input_scale`` [1] float32 and
    ``input_zero_point`` [1] int32. Calibrate on states the result is not
    later validated on. Raises ``ValueError`` without usable states.
    """
    _check_ptq_inputs(checkpoint, config, "static")
    if calibration_states is None:
        raise ValueError("static PTQ needs calibration_states, got None")
    states = torch.from_numpy(validate_states(np.asarray(calibration_states), checkpoint.arch.input_dim))
    started = time.perf_counter()
    n_samples = min(states.shape[0], config.calibration_batches * config.calibration_batch_size)
    ranges = _linear_input_ranges(
        checkpoint, states[:n_samples].split(config.calibration_batch_size), checker(interrupt)
    )
    quantized = _with_int8_weights(
        checkpoint,
        config.granularity,
        {"mode": "static", "activations": "uint8_affine", "observer": "minmax", "calibration_samples": n_samples},
    )
    for linear, (low, high) in ranges.items():
        scale, zero_point = activation_qparams(low, high)
        quantized.tensors[f"{linear}.input_scale"] = torch.tensor([scale], dtype=torch.float32)
        quantized.tensors[f"{linear}.input_zero_point"] = torch.tensor([zero_point], dtype=torch.int32)
    return PTQResult(quantized, checkpoint.param_bytes, quantized.param_bytes, n_samples, time.perf_counter() - started)


def is_static(checkpoint: Checkpoint) -> bool:
    """True for an int8 checkpoint with quantized activations."""
    return checkpoint.format == "int8" and f"{checkpoint.arch.blocks[0].linear}.input_scale" in checkpoint.tensors


def dequantize(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The float32 state dict a checkpoint computes with (a copy for int8, the tensors for float).

    For a static checkpoint this drops the activation quantization; use
    ``inference_forward`` to run it as stored.
    """
    keys = checkpoint.arch.state_dict_keys()
    if checkpoint.format == "float32":
        return {key: checkpoint.tensors[key] for key in keys}
    params = {key: checkpoint.tensors[key] for key in keys}
    for key in checkpoint.arch.linear_weight_keys:
        params[key] = dequantize_weight(checkpoint.tensors[key], checkpoint.tensors[f"{key}_scale"])
    return params


def inference_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fast eval-mode forward for any checkpoint: float, dynamic or static int8.

    Takes ``(batch, input_dim)`` float32 and returns ``(batch, output_dim)``.
    All weight conversion happens once here, not per call.
    """
    if is_static(checkpoint):
        return _static_forward(checkpoint)
    params = {key: tensor.contiguous() for key, tensor in dequantize(checkpoint).items()}
    return make_forward(checkpoint.arch, params)


def _static_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    """``make_forward`` with every Linear replaced by its static int8 computation."""
    tensors = checkpoint.tensors
    linears = []
    for block in checkpoint.arch.blocks:
        input_scale = tensors[f"{block.linear}.input_scale"]
        zero_point = int(tensors[f"{block.linear}.input_zero_point"])
        linears.append(
            _StaticLinear(
                # A float32 reciprocal, as torch's own quantizers round x * (1 / scale);
                # a 0-d tensor multiplies faster than a Python float.
                inverse_scale=(1.0 / input_scale).to(torch.float32).reshape(()),
                low=float(UINT8_MIN - zero_point),
                high=float(UINT8_MAX - zero_point),
                weight_t=tensors[block.weight].to(torch.float32).t().contiguous(),
                output_scale=(input_scale * tensors[f"{block.weight}_scale"]).contiguous(),
                bias=tensors[block.bias].contiguous(),
            )
        )
    params = {
        key: tensors[key].contiguous() for key in checkpoint.arch.state_dict_keys() if tensors[key].is_floating_point()
    }
    return make_forward(checkpoint.arch, params, linears=linears)


@dataclass(frozen=True)
class _StaticLinear:
    """One static Linear prepared for float kernels (integer values held in float32)."""

    inverse_scale: torch.Tensor
    low: float
    high: float
    weight_t: torch.Tensor
    output_scale: torch.Tensor
    bias: torch.Tensor

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, in)`` float32 -> ``(batch, out)`` float32."""
        centred = torch.mul(inputs, self.inverse_scale).round_().clamp_(self.low, self.high)
        return torch.addcmul(self.bias, torch.mm(centred, self.weight_t), self.output_scale)


def _check_ptq_inputs(checkpoint: Checkpoint, config: PTQConfig, mode: QuantizationMode) -> None:
    if checkpoint.format != "float32":
        raise ValueError(f"PTQ needs a float32 checkpoint, got {checkpoint.format}")
    if config.mode != mode:
        raise ValueError(f"quantize_{mode} needs config.mode == {mode!r}, got {config.mode!r}")


def _with_int8_weights(checkpoint: Checkpoint, granularity: Granularity, scheme: dict) -> Checkpoint:
    tensors = dict(checkpoint.tensors)
    for key in checkpoint.arch.linear_weight_keys:
        scale = weight_scale(tensors[key], granularity)
        tensors[key] = quantize_weight(tensors[key], scale)
        tensors[f"{key}_scale"] = scale
    quantization = {"scheme": "symmetric", "weight_zero_point": 0, "granularity": granularity, **scheme}
    # Whose behaviour a fine-tuned child keeps survives quantization; curves and configs stay with the float source.
    inherited = {key: checkpoint.metadata[key] for key in ("target",) if key in checkpoint.metadata}
    return Checkpoint(
        arch=checkpoint.arch,
        tensors=tensors,
        format="int8",
        quantization=quantization,
        metadata=inherited,
        source_format=checkpoint.source_format,
    )


def _linear_input_ranges(
    checkpoint: Checkpoint, batches: tuple[torch.Tensor, ...], interrupt: Interrupt
) -> dict[str, tuple[float, float]]:
    """``{linear prefix: (min, max)}`` of each Linear's input over all ``batches`` in the float network."""
    arch = checkpoint.arch
    params = checkpoint.tensors
    ranges: dict[str, tuple[float, float]] = {}
    linears = [_observed(block.linear, params[block.weight].t(), params[block.bias], ranges) for block in arch.blocks]
    forward = make_forward(arch, params, linears=linears)
    with torch.inference_mode():
        for batch in batches:
            interrupt()
            forward(batch)
    return ranges


def _observed(
    name: str, weight_t: torch.Tensor, bias: torch.Tensor, ranges: dict[str, tuple[float, float]]
) -> Callable[[torch.Tensor], torch.Tensor]:
    def linear(inputs: torch.Tensor) -> torch.Tensor:
        low, high = float(inputs.min()), float(inputs.max())
        seen = ranges.get(name, (low, high))
        ranges[name] = (min(seen[0], low), max(seen[1], high))
        return torch.addmm(bias, inputs, weight_t)

    return linear
