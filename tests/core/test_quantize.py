"""PTQ: int8 layout, static calibration, exact int8 emulation, and the agreement bar on a distilled student."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core import metrics
from core.artifacts import CheckpointError, decode, encode
from core.networks import LAYERNORM_EPS
from core.quantize import (
    PTQConfig,
    activation_qparams,
    inference_forward,
    is_static,
    quantize,
    quantize_dynamic,
    quantize_static,
)
from tests.core import baseline
from tests.core.baseline import random_student, states

STATIC = PTQConfig(mode="static")

LINEAR_INDICES = (0, 4, 8)  # the reference layout's Linear modules


@pytest.fixture(scope="module")
def student():
    return random_student()


@pytest.fixture(scope="module")
def calibration_states():
    return states(1000, seed=11)


@pytest.fixture(scope="module")
def eval_states():
    return states(2000, seed=12)


@pytest.fixture(scope="module")
def distilled():
    """(teacher, baseline-distilled student, 5000 held-out states from a different seed)."""
    return baseline.teacher(0), baseline.student(0), baseline.training_states(), states(5000, seed=4242)


def outputs(checkpoint, inputs):
    with torch.no_grad():
        return inference_forward(checkpoint)(inputs)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "qat"), ("granularity", "per_row"), ("calibration_batches", 0), ("calibration_batch_size", 1.5)],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PTQConfig(**{field: value})


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_dynamic_stores_int8_weights_with_scales_and_metadata(student, granularity):
    result = quantize_dynamic(student, PTQConfig(granularity=granularity))
    tensors = result.checkpoint.tensors
    for index in LINEAR_INDICES:
        weight = tensors[f"network.{index}.weight"]
        assert weight.dtype == torch.int8
        expected_scales = 1 if granularity == "per_tensor" else weight.shape[0]
        assert tensors[f"network.{index}.weight_scale"].shape == (expected_scales,)
        assert f"network.{index}.input_scale" not in tensors
    assert result.checkpoint.quantization["granularity"] == granularity
    assert result.checkpoint.quantization["mode"] == "dynamic"
    assert result.calibration_samples == 0
    # Per-channel pays 4 bytes per output row for its scales.
    assert result.float_param_bytes / result.quantized_param_bytes >= (2.8 if granularity == "per_tensor" else 2.5)


def test_per_channel_scales_fit_each_row(student):
    tensors = quantize_dynamic(student, PTQConfig(granularity="per_channel")).checkpoint.tensors
    weight = student.tensors["network.4.weight"]
    expected = weight.abs().amax(dim=1) / 127
    assert torch.allclose(tensors["network.4.weight_scale"], expected)
    # Every row uses the full int8 range.
    assert torch.equal(
        tensors["network.4.weight"].abs().amax(dim=1).to(torch.int64), torch.full((weight.shape[0],), 127)
    )


def test_static_records_activation_qparams_and_calibration_samples(student, calibration_states):
    result = quantize_static(student, calibration_states, STATIC)
    checkpoint = result.checkpoint
    assert result.calibration_samples == 640
    assert checkpoint.quantization["calibration_samples"] == 640
    assert checkpoint.quantization["mode"] == "static"
    assert is_static(checkpoint)
    for index in LINEAR_INDICES:
        assert checkpoint.tensors[f"network.{index}.input_scale"].dtype == torch.float32
        assert checkpoint.tensors[f"network.{index}.input_zero_point"].dtype == torch.int32
    # The first Linear sees signed states; the others see ReLU outputs, so their zero point is 0.
    assert 0 < int(checkpoint.tensors["network.0.input_zero_point"]) < 255
    assert int(checkpoint.tensors["network.4.input_zero_point"]) == 0
    assert int(checkpoint.tensors["network.8.input_zero_point"]) == 0


def test_static_calibrates_on_the_leading_states_without_wrapping(student, calibration_states):
    few = calibration_states[:100]
    result = quantize_static(student, few, STATIC)
    assert result.calibration_samples == 100
    scale, zero_point = activation_qparams(float(few.min()), float(few.max()))
    assert float(result.checkpoint.tensors["network.0.input_scale"]) == pytest.approx(scale)
    assert int(result.checkpoint.tensors["network.0.input_zero_point"]) == zero_point
    # Rows past the calibration budget do not change the result.
    budget = PTQConfig(mode="static", calibration_batches=2, calibration_batch_size=50)
    shuffled_tail = torch.cat([few, calibration_states[100:] * 10])
    assert torch.equal(
        quantize_static(student, shuffled_tail, budget).checkpoint.tensors["network.0.input_scale"],
        result.checkpoint.tensors["network.0.input_scale"],
    )


@pytest.mark.parametrize(
    ("bad_states", "message"),
    [
        (None, "calibration_states"),
        (torch.empty(0, 8), "non-empty"),
        (torch.zeros(10, 5), "width"),
        (torch.full((4, 8), float("nan")), "finite"),
    ],
)
def test_static_without_usable_states_is_an_error(student, bad_states, message):
    with pytest.raises(ValueError, match=message):
        quantize_static(student, bad_states, STATIC)


def test_ptq_refuses_int8_input_and_mismatched_mode(student, calibration_states):
    int8 = quantize_dynamic(student).checkpoint
    with pytest.raises(ValueError, match="float32"):
        quantize_dynamic(int8)
    with pytest.raises(ValueError, match="config.mode"):
        quantize_static(student, calibration_states, PTQConfig(mode="dynamic"))


def test_quantize_dispatches_on_mode(student, calibration_states):
    assert quantize(student).checkpoint.quantization["mode"] == "dynamic"
    assert quantize(student, STATIC, calibration_states).calibration_samples == 640
    with pytest.raises(ValueError, match="calibration_states"):
        quantize(student, STATIC)


def integer_reference_forward(checkpoint, inputs):
    """Static int8 inference in integer arithmetic: uint8 inputs, int8 weights, int64 accumulation."""
    tensors = checkpoint.tensors
    hidden = inputs
    for index in LINEAR_INDICES:
        input_scale = tensors[f"network.{index}.input_scale"]
        zero_point = int(tensors[f"network.{index}.input_zero_point"])
        inverse_scale = (1.0 / input_scale).to(torch.float32)
        inputs_uint8 = torch.clamp(torch.round(hidden * inverse_scale).to(torch.int64) + zero_point, 0, 255)
        accumulator = (inputs_uint8 - zero_point) @ tensors[f"network.{index}.weight"].to(torch.int64).t()
        hidden = (
            accumulator.to(torch.float32) * (input_scale * tensors[f"network.{index}.weight_scale"])
            + tensors[f"network.{index}.bias"]
        )
        if index != 8:
            norm = index + 1
            hidden = torch.nn.functional.layer_norm(
                hidden,
                hidden.shape[-1:],
                tensors[f"network.{norm}.weight"],
                tensors[f"network.{norm}.bias"],
                LAYERNORM_EPS,
            )
            hidden = torch.relu(hidden)
    return hidden


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_static_forward_emulates_integer_arithmetic(student, calibration_states, eval_states, granularity):
    checkpoint = quantize_static(
        student, calibration_states, dataclasses.replace(STATIC, granularity=granularity)
    ).checkpoint
    served = outputs(checkpoint, eval_states[:512])
    expected = integer_reference_forward(checkpoint, eval_states[:512])
    assert torch.allclose(served, expected, atol=1e-5, rtol=0)


def test_static_input_rounding_matches_torch_fake_quantize(student, calibration_states, eval_states):
    tensors = quantize_static(student, calibration_states, STATIC).checkpoint.tensors
    scale, zero_point = float(tensors["network.0.input_scale"]), int(tensors["network.0.input_zero_point"])
    torch_grid = torch.fake_quantize_per_tensor_affine(eval_states, scale, zero_point, 0, 255)
    ours = (
        torch.clamp(torch.round(eval_states * (1.0 / tensors["network.0.input_scale"])), -zero_point, 255 - zero_point)
        * scale
    )
    assert torch.equal(ours, torch_grid)


def test_static_quantizes_activations_unlike_dynamic(student, calibration_states, eval_states):
    dynamic = quantize_dynamic(student).checkpoint
    static = quantize_static(student, calibration_states, STATIC).checkpoint
    gap = metrics.max_abs_error(outputs(dynamic, eval_states), outputs(static, eval_states))
    assert gap > 1e-4


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_files_round_trip_and_shrink(student, calibration_states, eval_states, mode):
    checkpoint = quantize(student, PTQConfig(mode=mode), calibration_states).checkpoint
    data = encode(checkpoint)
    loaded = decode(data)
    assert loaded.format == "int8"
    assert loaded.quantization == checkpoint.quantization
    assert torch.equal(outputs(loaded, eval_states), outputs(checkpoint, eval_states))
    assert len(encode(student)) / len(data) >= (2.0 if mode == "dynamic" else 1.8)


def test_decode_refuses_incomplete_or_out_of_range_activation_qparams(student, calibration_states):
    checkpoint = quantize_static(student, calibration_states, STATIC).checkpoint
    missing = dataclasses.replace(
        checkpoint, tensors={k: v for k, v in checkpoint.tensors.items() if k != "network.4.input_zero_point"}
    )
    with pytest.raises(CheckpointError, match="network.4.input_zero_point"):
        decode(encode(missing))
    out_of_range = dataclasses.replace(
        checkpoint, tensors={**checkpoint.tensors, "network.0.input_zero_point": torch.tensor([300], dtype=torch.int32)}
    )
    with pytest.raises(CheckpointError, match="input_zero_point"):
        decode(encode(out_of_range))


def test_activation_qparams_keep_zero_exact():
    scale, zero_point = activation_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255)
    assert zero_point == round(1.0 / scale)
    assert activation_qparams(0.5, 2.0) == (pytest.approx(2.0 / 255), 0)


def test_ptq_keeps_the_agreement_of_a_distilled_student(distilled):
    """The quality bar: top-1 agreement with the float student on 5000 held-out states."""
    _, student, training_states, held_out = distilled
    float_q = outputs(student, held_out)
    dynamic = quantize_dynamic(student).checkpoint
    static = quantize_static(student, training_states, STATIC).checkpoint
    assert metrics.action_agreement(float_q, outputs(dynamic, held_out)) >= 0.99
    assert metrics.action_agreement(float_q, outputs(static, held_out)) >= 0.97
