"""Int8 post-training quantization and the int8 inference path.

Weights are quantized symmetrically (zero point 0) to int8, per tensor or per
output channel: ``scale = max|W| / 127``, ``W_q = clamp(round(W / scale), -128, 127)``
with rounding half to even. Biases and LayerNorm parameters stay float32.

``dynamic`` (the default) is weight-only: activations stay float.
``static`` also quantizes the input of every Linear to uint8 with an affine
per-tensor scheme calibrated on states (min/max observer)::

    x_q = clamp(round(x * (1 / input_scale)) + input_zero_point, 0, 255)

and each Linear computes ``(x_q - zp) @ W_q^T`` exactly in integers, then
``acc * (input_scale * weight_scale) + bias`` in float32. LayerNorm and ReLU
stay float (the reference's static mode quantizes LayerNorm too). Both results
are stored in the backend-free format of ``core.artifacts``.

Serving: on these tiny networks no int8 kernel available on CPU beats a float
``addmm`` (the time goes to per-call overhead, not arithmetic; see
``bench/bench_quantize.py``), so the int8 path keeps the int8 values in float32
tensors and uses float kernels. Products of int8 and uint8 values summed over
fewer than 518 inputs stay below 2**24, so the float32 accumulation of a static
Linear is exactly the int32 one. The artifact stays int8; only the kernel is float.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from core.artifacts import Checkpoint
from core.networks import LAYERNORM_EPS, LINEAR_INDICES, STATE_DICT_KEYS, functional_forward, network_from_state_dict
from core.states import validate_states

Granularity = Literal["per_tensor", "per_channel"]
QuantizationMode = Literal["dynamic", "static"]
INT8_MIN, INT8_MAX = -128, 127
UINT8_MIN, UINT8_MAX = 0, 255
SCALE_FLOOR = 1e-8


@dataclass(frozen=True)
class PTQConfig:
    """Post-training quantization settings (reference defaults).

    ``calibration_batches`` x ``calibration_batch_size`` is the number of
    leading states a static calibration reads (640 by default).
    """

    mode: QuantizationMode = "dynamic"
    granularity: Granularity = "per_tensor"
    calibration_batches: int = 10
    calibration_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode must be 'dynamic' or 'static', got {self.mode!r}")
        if self.granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        for field in ("calibration_batches", "calibration_batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")


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
    if granularity == "per_channel":
        max_abs = weight.abs().amax(dim=1)
    else:
        max_abs = weight.abs().max().reshape(1)
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


def quantize(checkpoint: Checkpoint, config: PTQConfig = PTQConfig(), calibration_states: torch.Tensor | np.ndarray | None = None) -> PTQResult:
    """Quantize a float checkpoint in ``config.mode`` (static needs ``calibration_states``)."""
    if config.mode == "static":
        return quantize_static(checkpoint, calibration_states, config)
    return quantize_dynamic(checkpoint, config)


def quantize_dynamic(checkpoint: Checkpoint, config: PTQConfig = PTQConfig()) -> PTQResult:
    """Weight-only int8 quantization of a float checkpoint (no calibration)."""
    _check_ptq_inputs(checkpoint, config, "dynamic")
    started = time.perf_counter()
    quantized = _with_int8_weights(checkpoint, config.granularity, {"mode": "dynamic", "activations": "float32"})
    return PTQResult(quantized, checkpoint.param_bytes, quantized.param_bytes, 0, time.perf_counter() - started)


def quantize_static(checkpoint: Checkpoint, calibration_states: torch.Tensor | np.ndarray | None, config: PTQConfig = PTQConfig(mode="static")) -> PTQResult:
    """Int8 weights plus uint8 activations calibrated on ``calibration_states``.

    ``calibration_states`` is ``(n, input_dim)`` float. The first
    ``min(n, calibration_batches * calibration_batch_size)`` rows are read once,
    without wrapping around (the min/max of consecutive batches is the min/max
    of their union), and that count is ``calibration_samples``. Each Linear's
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
    ranges = _linear_input_ranges(checkpoint, states[:n_samples])
    quantized = _with_int8_weights(
        checkpoint,
        config.granularity,
        {"mode": "static", "activations": "uint8_affine", "observer": "minmax", "calibration_samples": n_samples},
    )
    for index, (low, high) in ranges.items():
        scale, zero_point = activation_qparams(low, high)
        quantized.tensors[f"network.{index}.input_scale"] = torch.tensor([scale], dtype=torch.float32)
        quantized.tensors[f"network.{index}.input_zero_point"] = torch.tensor([zero_point], dtype=torch.int32)
    return PTQResult(quantized, checkpoint.param_bytes, quantized.param_bytes, n_samples, time.perf_counter() - started)


def is_static(checkpoint: Checkpoint) -> bool:
    """True for an int8 checkpoint with quantized activations."""
    return checkpoint.format == "int8" and "network.0.input_scale" in checkpoint.tensors


def dequantize(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The float32 state dict a checkpoint computes with (a copy for int8, the tensors for float).

    For a static checkpoint this drops the activation quantization; use
    ``inference_forward`` to run it as stored.
    """
    if checkpoint.format == "float32":
        return {key: checkpoint.tensors[key] for key in STATE_DICT_KEYS}
    params = {key: checkpoint.tensors[key] for key in STATE_DICT_KEYS}
    for index in LINEAR_INDICES:
        key = f"network.{index}.weight"
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
    return lambda states: functional_forward(params, states)


def _static_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    tensors = checkpoint.tensors
    layers = []
    for index in LINEAR_INDICES:
        input_scale = tensors[f"network.{index}.input_scale"]
        zero_point = int(tensors[f"network.{index}.input_zero_point"])
        layers.append(
            _StaticLinear(
                # A float32 reciprocal, as torch's own quantizers round x * (1 / scale);
                # a 0-d tensor multiplies faster than a Python float.
                inverse_scale=(1.0 / input_scale).to(torch.float32).reshape(()),
                low=float(UINT8_MIN - zero_point),
                high=float(UINT8_MAX - zero_point),
                weight_t=tensors[f"network.{index}.weight"].to(torch.float32).t().contiguous(),
                output_scale=(input_scale * tensors[f"network.{index}.weight_scale"]).contiguous(),
                bias=tensors[f"network.{index}.bias"].contiguous(),
            )
        )
    norms = [(tensors[f"network.{index}.weight"].contiguous(), tensors[f"network.{index}.bias"].contiguous()) for index in (1, 5)]

    def forward(states: torch.Tensor) -> torch.Tensor:
        hidden = layers[0](states)
        for layer, (norm_weight, norm_bias) in zip(layers[1:], norms):
            hidden = F.layer_norm(hidden, hidden.shape[-1:], norm_weight, norm_bias, LAYERNORM_EPS)
            # With zero point 0 (every calibrated ReLU output) the clamp at 0 is the ReLU.
            if layer.low < 0:
                hidden = torch.relu_(hidden)
            hidden = layer(hidden)
        return hidden

    return forward


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
    for index in LINEAR_INDICES:
        key = f"network.{index}.weight"
        scale = weight_scale(tensors[key], granularity)
        tensors[key] = quantize_weight(tensors[key], scale)
        tensors[f"{key}_scale"] = scale
    quantization = {"scheme": "symmetric", "weight_zero_point": 0, "granularity": granularity, **scheme}
    return Checkpoint(arch=checkpoint.arch, tensors=tensors, format="int8", quantization=quantization)


def _linear_input_ranges(checkpoint: Checkpoint, states: torch.Tensor) -> dict[int, tuple[float, float]]:
    """``{linear_index: (min, max)}`` of each Linear's input over ``states`` in the float network."""
    model = network_from_state_dict(checkpoint.tensors, checkpoint.arch)
    ranges: dict[int, tuple[float, float]] = {}

    def observer(index: int):
        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor]) -> None:
            ranges[index] = (float(inputs[0].min()), float(inputs[0].max()))

        return hook

    handles = [model.network[index].register_forward_pre_hook(observer(index)) for index in LINEAR_INDICES]
    try:
        with torch.inference_mode():
            model(states)
    finally:
        for handle in handles:
            handle.remove()
    return ranges
