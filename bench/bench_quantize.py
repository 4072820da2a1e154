"""Benchmark the int8 paths against float and torch's own int8 kernels; writes bench/results/quantize.json.

Run: ``.venv/bin/python bench/bench_quantize.py`` (one intra-op thread, as
workers run). For each network (an 8-32-32-4 student and an 8-64-4 parent)
it reports single-sample latency (median/p95 over rounds), throughput at
batch 256 and 1024, parameter and file bytes, and top-1 agreement with float:

- ``float_module``: ``QNetwork`` in eval mode;
- ``float_functional``: ``inference_forward`` of the float checkpoint;
- ``int8_dynamic`` / ``int8_static``: ``inference_forward`` of our int8 checkpoints (what we serve);
- ``torch_ao_dynamic``: ``torch.ao.quantization.quantize_dynamic`` on the module;
- ``int8_kernel_dynamic``: our int8 weights packed for ``torch.ops.quantized.linear_dynamic``
  (a real int8 GEMM) in a functional forward, to see whether a kernel beats float.

A ``kernels`` section times one 32x32 Linear on its own with ``addmm``,
``quantized.linear_dynamic`` and ``torch._int_mm``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import metrics  # noqa: E402
from core.artifacts import Checkpoint, encode, float_checkpoint  # noqa: E402
from core.networks import LAYERNORM_EPS, QNetworkArch, init_network, network_from_state_dict, student_arch  # noqa: E402
from core.quantize import (  # noqa: E402
    PTQConfig,
    inference_forward,  # noqa: E402
    quantize_dynamic,
    quantize_static,
)
from core.states import SyntheticStates, synthetic_states  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quantize.json"
ROUNDS = 5
LATENCY_WARMUP, LATENCY_REPEATS = 200, 2000
THROUGHPUT_WARMUP, THROUGHPUT_TIMED = 20, 300
BATCH_SIZES = (256, 1024)
TARGETS = {
    "student_int8_latency_median_us_max": 20.0,
    "student_int8_states_per_sec_at_256_min": 5e6,
    "param_compression_min": 2.8,
    "student_file_compression_min": 2.0,
    "parent_file_compression_min": 2.8,
}


def main() -> None:
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    eval_states = torch.from_numpy(synthetic_states(SyntheticStates(5000, seed=2024), 8))
    calibration_states = torch.from_numpy(synthetic_states(SyntheticStates(640, seed=2025), 8))
    networks = {
        "student_8-32-32-4": init_network(student_arch(QNetworkArch()), 0),
        "parent_8-64-64-4": init_network(QNetworkArch(), 0),
    }
    report = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "quantized_engine": torch.backends.quantized.engine,
        },
        "method": {
            "rounds": ROUNDS,
            "latency": f"median over rounds of per-round median/p95 of {LATENCY_REPEATS} single-sample calls after {LATENCY_WARMUP} warm-up calls",
            "throughput": f"median over rounds of {THROUGHPUT_TIMED} full-batch calls after {THROUGHPUT_WARMUP} warm-up calls",
            "agreement": "top-1 agreement with the float network on 5000 standard-normal states (seed 2024); static calibrated on 640 other states",
        },
        "networks": {name: bench_network(model, eval_states, calibration_states) for name, model in networks.items()},
        "kernels": bench_kernels(),
    }
    report["targets"] = check_targets(report["networks"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary(report), indent=2))


def bench_network(model: torch.nn.Module, eval_states: torch.Tensor, calibration_states: torch.Tensor) -> dict:
    model = model.eval()
    float_ckpt = float_checkpoint(model.state_dict())
    dynamic = quantize_dynamic(float_ckpt).checkpoint
    static = quantize_static(float_ckpt, calibration_states, PTQConfig(mode="static")).checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_ao = torch.ao.quantization.quantize_dynamic(
            network_from_state_dict(float_ckpt.tensors), {torch.nn.Linear}, torch.qint8
        )
        int8_kernel = int8_kernel_forward(dynamic)
    int_mm_static = int_mm_static_forward(static)
    paths: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "float_module": network_from_state_dict(float_ckpt.tensors),
        "float_functional": inference_forward(float_ckpt),
        "int8_dynamic": inference_forward(dynamic),
        "int8_static": inference_forward(static),
        "torch_ao_dynamic": torch_ao,
        "int8_kernel_dynamic": int8_kernel,
        "int8_kernel_static_int_mm": int_mm_static,
    }
    with torch.inference_mode():
        float_q = paths["float_module"](eval_states)
        outputs = {name: forward(eval_states) for name, forward in paths.items()}
    agreements = {name: metrics.action_agreement(float_q, output) for name, output in outputs.items()}
    # Same integers as the float-kernel emulation; only the float epilogue rounds
    # differently, which can move a later activation by one step at a rounding tie.
    int_mm_gap = metrics.max_abs_error(outputs["int8_static"], outputs["int8_kernel_static_int_mm"])
    figures = {
        name: time_path(forward, eval_states) | {"agreement_with_float": agreements[name]}
        for name, forward in paths.items()
    }
    float_file, dynamic_file, static_file = (len(encode(checkpoint)) for checkpoint in (float_ckpt, dynamic, static))
    return {
        "arch": float_ckpt.arch.describe(),
        "paths": figures,
        "int_mm_vs_static_emulation_max_abs_diff": int_mm_gap,
        "size": {
            "float_param_bytes": float_ckpt.param_bytes,
            "int8_dynamic_param_bytes": dynamic.param_bytes,
            "int8_static_param_bytes": static.param_bytes,
            "param_compression_dynamic": float_ckpt.param_bytes / dynamic.param_bytes,
            "param_compression_static": float_ckpt.param_bytes / static.param_bytes,
            "float_file_bytes": float_file,
            "int8_dynamic_file_bytes": dynamic_file,
            "int8_static_file_bytes": static_file,
            "file_compression_dynamic": float_file / dynamic_file,
            "file_compression_static": float_file / static_file,
        },
    }


def int8_kernel_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    """Our per-tensor int8 weights prepacked for ``quantized.linear_dynamic`` (int8 GEMM, activations quantized per call)."""
    tensors = checkpoint.tensors
    packed = {}
    for index in (0, 4, 8):
        weight = torch._make_per_tensor_quantized_tensor(
            tensors[f"network.{index}.weight"], float(tensors[f"network.{index}.weight_scale"]), 0
        )
        packed[index] = torch.ops.quantized.linear_prepack(weight, tensors[f"network.{index}.bias"])
    norms = {index: (tensors[f"network.{index}.weight"], tensors[f"network.{index}.bias"]) for index in (1, 5)}

    def forward(states: torch.Tensor) -> torch.Tensor:
        hidden = torch.ops.quantized.linear_dynamic(states, packed[0])
        hidden = torch.relu_(F.layer_norm(hidden, hidden.shape[-1:], *norms[1], LAYERNORM_EPS))
        hidden = torch.ops.quantized.linear_dynamic(hidden, packed[4])
        hidden = torch.relu_(F.layer_norm(hidden, hidden.shape[-1:], *norms[5], LAYERNORM_EPS))
        return torch.ops.quantized.linear_dynamic(hidden, packed[8])

    return forward


def int_mm_static_forward(checkpoint: Checkpoint) -> Callable[[torch.Tensor], torch.Tensor]:
    """Our static checkpoint on ``torch._int_mm`` (int8 x int8 -> int32), the integers of ``inference_forward``.

    uint8 inputs shifted by -128 fit int8; ``sum((x_u8 - zp) w) = sum((x_u8 - 128) w) + (128 - zp) sum(w)``,
    so the shift is one precomputed term folded into the float bias.
    """
    tensors = checkpoint.tensors
    layers = []
    for index in (0, 4, 8):
        zero_point = int(tensors[f"network.{index}.input_zero_point"])
        weight = tensors[f"network.{index}.weight"]
        output_scale = tensors[f"network.{index}.input_scale"] * tensors[f"network.{index}.weight_scale"]
        shift_bias = tensors[f"network.{index}.bias"] + output_scale * (128 - zero_point) * weight.to(
            torch.float32
        ).sum(dim=1)
        inverse_scale = (1.0 / tensors[f"network.{index}.input_scale"]).reshape(())
        layers.append(
            (
                inverse_scale,
                float(-zero_point),
                float(255 - zero_point),
                float(zero_point - 128),
                weight.t().contiguous(),
                output_scale,
                shift_bias,
            )
        )
    norms = [(tensors[f"network.{index}.weight"], tensors[f"network.{index}.bias"]) for index in (1, 5)]

    def linear(layer: tuple, inputs: torch.Tensor) -> torch.Tensor:
        inverse_scale, low, high, shift, weight_t, output_scale, shift_bias = layer
        shifted = torch.mul(inputs, inverse_scale).round_().clamp_(low, high).add_(shift).to(torch.int8)
        return torch.addcmul(shift_bias, torch._int_mm(shifted, weight_t), output_scale)

    def forward(states: torch.Tensor) -> torch.Tensor:
        hidden = linear(layers[0], states)
        for layer, (norm_weight, norm_bias) in zip(layers[1:], norms):
            hidden = linear(layer, F.layer_norm(hidden, hidden.shape[-1:], norm_weight, norm_bias, LAYERNORM_EPS))
        return hidden

    return forward


def time_path(forward: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor) -> dict:
    latencies = [metrics.measure_latency(forward, states[:1], LATENCY_WARMUP, LATENCY_REPEATS) for _ in range(ROUNDS)]
    figures = {
        "latency_median_us": float(np.median([stats.median_ms for stats in latencies]) * 1000),
        "latency_p95_us": float(np.median([stats.p95_ms for stats in latencies]) * 1000),
    }
    for batch_size in BATCH_SIZES:
        batch = states[:batch_size]
        runs = [
            metrics.measure_throughput(forward, batch, THROUGHPUT_WARMUP, THROUGHPUT_TIMED).states_per_sec
            for _ in range(ROUNDS)
        ]
        figures[f"states_per_sec_at_{batch_size}"] = float(np.median(runs))
    return figures


def bench_kernels() -> dict:
    """One 32x32 Linear: float addmm against the int8 GEMMs torch ships for CPU."""
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(32, 32, generator=generator), torch.randn(32, generator=generator)
    weight_int8 = torch.randint(-128, 128, (32, 32), dtype=torch.int8, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = torch.ops.quantized.linear_prepack(torch._make_per_tensor_quantized_tensor(weight_int8, 0.01, 0), bias)
    kernels = {
        "float_addmm": (lambda x: torch.addmm(bias, x, weight.t()), torch.float32),
        "quantized_linear_dynamic": (lambda x: torch.ops.quantized.linear_dynamic(x, packed), torch.float32),
        "int_mm_int8": (lambda x: torch._int_mm(x, weight_int8.t()), torch.int8),
    }
    results = {}
    for name, (kernel, dtype) in kernels.items():
        inputs = torch.randint(-128, 128, (1024, 32), generator=generator).to(dtype)
        try:
            results[name] = time_path(kernel, inputs)
        except RuntimeError as error:  # a kernel the build does not offer for these shapes
            results[name] = {"error": str(error).splitlines()[0]}
    return results


def check_targets(networks: dict) -> dict:
    student, parent = networks["student_8-32-32-4"], networks["parent_8-64-64-4"]
    served = student["paths"]["int8_dynamic"]
    checks = {
        "student_int8_latency_median_us_max": served["latency_median_us"],
        "student_int8_states_per_sec_at_256_min": served["states_per_sec_at_256"],
        "param_compression_min": min(
            student["size"]["param_compression_dynamic"], parent["size"]["param_compression_dynamic"]
        ),
        "student_file_compression_min": student["size"]["file_compression_dynamic"],
        "parent_file_compression_min": parent["size"]["file_compression_dynamic"],
    }
    return {
        name: {
            "value": value,
            "target": TARGETS[name],
            "met": value <= TARGETS[name] if name.endswith("_max") else value >= TARGETS[name],
        }
        for name, value in checks.items()
    }


def summary(report: dict) -> dict:
    return {
        name: {
            path: {key: round(value, 4) for key, value in figures.items()} for path, figures in network["paths"].items()
        }
        | {"size": network["size"]}
        for name, network in report["networks"].items()
    } | {"kernels": report["kernels"], "targets": report["targets"]}


if __name__ == "__main__":
    main()
