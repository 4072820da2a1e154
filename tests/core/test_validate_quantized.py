"""validate_quantized: fidelity, sizes, checks and gating, teacher figures, input errors."""

from __future__ import annotations

import json

import pytest
import torch

from core import metrics
from core.artifacts import encode
from core.quantize import PTQConfig, inference_forward, quantize_dynamic, quantize_static
from core.validate import QuantizedValidationConfig, validate_quantized
from tests.core import baseline
from tests.core.baseline import random_student, states

FAST = QuantizedValidationConfig(
    latency_warmup=1, latency_repeats=5, throughput_warmup_batches=1, throughput_timed_batches=2
)


@pytest.fixture(scope="module")
def student():
    return random_student()


@pytest.fixture(scope="module")
def eval_states():
    return states(1500, seed=12)


@pytest.fixture(scope="module")
def static_int8(student):
    return quantize_static(student, states(640, seed=11), PTQConfig(mode="static")).checkpoint


@pytest.fixture(scope="module")
def report(student, static_int8, eval_states):
    return validate_quantized(student, static_int8, eval_states, FAST, teacher=baseline.teacher(0))


def outputs(checkpoint, inputs):
    with torch.no_grad():
        return inference_forward(checkpoint)(inputs)


def test_report_identifies_itself_and_is_json(report):
    assert report["schema_version"] == "1.0"
    assert report["kind"] == "validate-quantized"
    json.dumps(report, allow_nan=False)


def test_fidelity_compares_float_and_int8_outputs(report, student, static_int8, eval_states):
    float_q, int8_q = outputs(student, eval_states), outputs(static_int8, eval_states)
    fidelity = report["fidelity"]
    assert fidelity["action_agreement"] == pytest.approx(metrics.action_agreement(float_q, int8_q))
    assert fidelity["mae"] == pytest.approx(metrics.mean_abs_error(float_q, int8_q))
    assert fidelity["max_abs_error"] == pytest.approx(metrics.max_abs_error(float_q, int8_q))
    assert set(fidelity["top_k_agreements"]) == {"1", "2", "3"}
    assert fidelity["n_states"] == 1500
    assert 0.95 < fidelity["action_agreement"] < 1.0


def test_sizes_use_the_stored_bytes(report, student, static_int8):
    size = report["size"]
    assert size["float_file_bytes"] == len(encode(student))
    assert size["quantized_file_bytes"] == len(encode(static_int8))
    assert size["quantized_param_bytes"] == static_int8.param_bytes
    assert size["param_compression_ratio"] == pytest.approx(student.param_bytes / static_int8.param_bytes)
    assert size["param_compression_ratio"] > 2.8


def test_latency_throughput_and_memory_are_measured(report):
    assert report["latency"]["float"]["repeats"] == 5
    assert report["latency"]["latency_ratio"] > 0
    assert report["throughput"]["batch_size"] == 256
    assert report["throughput"]["quantized"]["states_per_sec"] > 0
    assert report["memory"]["rss_bytes_after"] > 0
    assert report["quantization"]["mode"] == "static" and report["quantization"]["static_activations"]


def test_latency_is_reported_but_does_not_gate_by_default(report):
    check = report["checks"]["max_latency_ratio"]
    assert check["gates"] is False and check["threshold"] == 2.0
    assert any("Latency" in note for note in report["notes"])
    assert report["passed"] is True and report["failed_checks"] == []


def test_a_gating_check_that_fails_fails_the_report(student, static_int8, eval_states):
    strict = QuantizedValidationConfig(
        min_action_agreement=1.0, max_latency_ratio=1e-6, gate_latency=True, latency_repeats=3, throughput_batch_size=0
    )
    report = validate_quantized(student, static_int8, eval_states, strict)
    assert report["passed"] is False
    assert report["failed_checks"] == ["min_action_agreement", "max_latency_ratio"]
    assert report["throughput"] is None


def test_teacher_figures_compare_both_models_with_the_teacher(report, student, static_int8, eval_states):
    teacher_q = outputs(baseline.teacher(0), eval_states)
    assert report["teacher"]["float"]["action_agreement"] == pytest.approx(
        metrics.action_agreement(teacher_q, outputs(student, eval_states))
    )
    assert report["teacher"]["quantized"]["action_agreement"] == pytest.approx(
        metrics.action_agreement(teacher_q, outputs(static_int8, eval_states))
    )


def test_wrong_formats_are_named(student, static_int8, eval_states):
    with pytest.raises(ValueError, match="float_ckpt must be a float32"):
        validate_quantized(static_int8, static_int8, eval_states, FAST)
    with pytest.raises(ValueError, match="quant_ckpt must be an int8"):
        validate_quantized(student, student, eval_states, FAST)


def test_mismatched_architecture_and_states_are_errors(student, eval_states):
    parent_int8 = quantize_dynamic(baseline.teacher(0)).checkpoint
    with pytest.raises(ValueError, match="8-64-64-4"):
        validate_quantized(student, parent_int8, eval_states, FAST)
    with pytest.raises(ValueError, match="width"):
        validate_quantized(student, quantize_dynamic(student).checkpoint, torch.zeros(10, 3), FAST)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_action_agreement", 1.5),
        ("max_mean_q_error", -1.0),
        ("latency_repeats", 0),
        ("throughput_batch_size", -1),
        ("top_k_values", ()),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        QuantizedValidationConfig(**{field: value})


def test_onnxruntime_column_runs_both_exports(student, static_int8, eval_states):
    config = QuantizedValidationConfig(
        latency_warmup=1, latency_repeats=3, throughput_batch_size=64, throughput_timed_batches=2, onnxruntime=True
    )
    report = validate_quantized(student, static_int8, eval_states, config)
    for column in ("float", "quantized"):
        figures = report["onnxruntime"][column]
        assert figures["action_agreement_with_service"] >= 0.99
        assert figures["latency"]["median_ms"] > 0 and figures["throughput"]["states_per_sec"] > 0
    assert report["onnxruntime"]["quantized"]["file_bytes"] < 0.6 * report["onnxruntime"]["float"]["file_bytes"]
