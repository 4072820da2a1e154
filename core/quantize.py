"""Int8 post-training quantization and the int8 inference path.

Weights are quantized symmetrically (zero point 0) to int8, per tensor or per
output channel: ``scale = max|W| / 127``, ``W_q = clamp(round(W / scale), -128, 127)``
with rounding half to even. Biases and LayerNorm parameters stay float32.

``dynamic`` (the default) is weight-only: activations stay float. The result
is stored in the backend-free format of ``core.artifacts``.

Serving: on these tiny networks no int8 kernel available on CPU beats a float
``addmm`` (the time goes to per-call overhead, not arithmetic), so the int8
path dequantizes the weights once at load and runs the functional forward.
The artifact stays int8; only the kernel is float.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from core.artifacts import Checkpoint
from core.networks import LINEAR_INDICES, STATE_DICT_KEYS, functional_forward

Granularity = Literal["per_tensor", "per_channel"]
INT8_MIN, INT8_MAX = -128, 127
SCALE_FLOOR = 1e-8


@dataclass(frozen=True)
class PTQConfig:
    """Post-training quantization settings (reference defaults)."""

    mode: Literal["dynamic", "static"] = "dynamic"
    granularity: Granularity = "per_tensor"
    calibration_batches: int = 10
    calibration_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode must be 'dynamic' or 'static', got {self.mode!r}")
        if self.granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        if self.calibration_batches < 1:
            raise ValueError(f"calibration_batches must be >= 1, got {self.calibration_batches}")
        if self.calibration_batch_size < 1:
            raise ValueError(f"calibration_batch_size must be >= 1, got {self.calibration_batch_size}")


@dataclass(frozen=True)
class PTQResult:
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


def quantize_dynamic(checkpoint: Checkpoint, config: PTQConfig = PTQConfig()) -> PTQResult:
    """Weight-only int8 quantization of a float checkpoint (no calibration)."""
    if checkpoint.format != "float32":
        raise ValueError(f"PTQ needs a float32 checkpoint, got {checkpoint.format}")
    started = time.perf_counter()
    tensors = dict(checkpoint.tensors)
    for index in LINEAR_INDICES:
        key = f"network.{index}.weight"
        scale = weight_scale(tensors[key], config.granularity)
        tensors[key] = quantize_weight(tensors[key], scale)
        tensors[f"network.{index}.weight_scale"] = scale
    quantized = Checkpoint(
        arch=checkpoint.arch,
        tensors=tensors,
        format="int8",
        quantization={"mode": "dynamic", "scheme": "symmetric", "weight_zero_point": 0, "granularity": config.granularity, "activations": "float32"},
    )
    return PTQResult(quantized, checkpoint.param_bytes, quantized.param_bytes, 0, time.perf_counter() - started)


def dequantize(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The float32 state dict a checkpoint computes with (a copy for int8, the tensors for float)."""
    if checkpoint.format == "float32":
        return {key: checkpoint.tensors[key] for key in STATE_DICT_KEYS}
    params = {key: checkpoint.tensors[key] for key in STATE_DICT_KEYS}
    for index in LINEAR_INDICES:
        key = f"network.{index}.weight"
        params[key] = dequantize_weight(checkpoint.tensors[key], checkpoint.tensors[f"{key}_scale"])
    return params


def inference_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fast eval-mode forward for any checkpoint, float or int8.

    Takes ``(batch, input_dim)`` float32 and returns ``(batch, output_dim)``.
    Weights are dequantized once here, not per call.
    """
    params = {key: tensor.contiguous() for key, tensor in dequantize(checkpoint).items()}
    return lambda states: functional_forward(params, states)
