"""QAT: fake quantization with a straight-through gradient, a real int8 export, and the PTQ-then-QAT choice."""

from __future__ import annotations

import pytest
import torch

from core import metrics
from core.artifacts import decode, encode, float_checkpoint
from core.qat import QATConfig, QuantizationChoiceConfig, choose_quantization, fake_quantize_weight, qat
from core.quantize import PTQConfig, dequantize, inference_forward, quantize_dynamic
from core.states import derive_seed
from core.training import train_val_split
from tests.core import baseline
from tests.core.baseline import random_student, states

SHORT = QATConfig(epochs=2, loss_fn="mse")  # mse: the val loss is then a plain metric to check against

LINEAR_INDICES = (0, 4, 8)  # the reference layout's Linear modules


@pytest.fixture(scope="module")
def teacher():
    return baseline.teacher(0)


@pytest.fixture(scope="module")
def training_states():
    return states(1000, seed=42)


@pytest.fixture(scope="module")
def qat_result(teacher, training_states):
    return qat(random_student(), teacher, training_states, SHORT)


@pytest.fixture(scope="module")
def distilled(teacher):
    return baseline.student(0), baseline.training_states(), states(5000, seed=4242)


def outputs(checkpoint, inputs):
    with torch.no_grad():
        return inference_forward(checkpoint)(inputs)


def test_config_defaults_are_the_reference_qat_defaults_but_for_the_loss():
    config = QATConfig()
    assert (config.epochs, config.lr, config.batch_size, config.loss_fn, config.seed, config.convert) == (
        5,
        1e-3,
        32,
        "kl",
        42,
        True,
    )
    assert config.train_config().val_fraction == 0.1


@pytest.mark.parametrize(
    ("field", "value"), [("granularity", "per_row"), ("convert", "yes"), ("epochs", 0), ("lr", -1.0), ("loss_fn", "l1")]
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        QATConfig(**{field: value})


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_fake_quantization_forwards_int8_values_and_passes_gradients_straight_through(granularity):
    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    fake = fake_quantize_weight(weight, granularity)
    scale = (
        weight.detach().abs().max() / 127
        if granularity == "per_tensor"
        else weight.detach().abs().amax(dim=1, keepdim=True) / 127
    )
    levels = fake.detach() / scale
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert levels.abs().max() <= 127 + 1e-4
    upstream = torch.randn(16, 8)
    (fake * upstream).sum().backward()
    assert torch.equal(weight.grad, upstream)


def test_qat_rounds_half_to_even():
    weight = torch.tensor([[127.0, 2.5, -1.5, 0.5]])  # scale 1: every other value is a tie
    assert fake_quantize_weight(weight).tolist() == [[127.0, 2.0, -2.0, 0.0]]


def test_converted_checkpoint_is_really_int8_and_smaller(qat_result):
    quantized = qat_result.quantized
    for index in LINEAR_INDICES:
        assert quantized.tensors[f"network.{index}.weight"].dtype == torch.int8
    assert quantized.quantization["mode"] == "qat"
    float_file, int8_file = encode(qat_result.checkpoint), encode(quantized)
    stored = decode(int8_file)
    assert {stored.tensors[f"network.{index}.weight"].dtype for index in LINEAR_INDICES} == {torch.int8}
    assert len(float_file) / len(int8_file) >= 2.0
    assert qat_result.float_param_bytes / qat_result.quantized_param_bytes >= 2.8


def test_converted_weights_are_the_fake_quantized_training_weights(qat_result):
    trained = qat_result.checkpoint.tensors
    served = dequantize(qat_result.quantized)
    for index in LINEAR_INDICES:
        key = f"network.{index}.weight"
        assert torch.allclose(served[key], fake_quantize_weight(trained[key]), atol=1e-7)


def test_validation_metrics_are_those_of_the_int8_model(qat_result, teacher, training_states):
    """The best epoch's val figures are the converted int8 model's on the val rows."""
    training = qat_result.training
    best = training.history[training.best_epoch - 1] if training.best_epoch else training.initial
    # The rows the loop validates on, as train() documents them.
    split = train_val_split(
        training_states.shape[0], SHORT.val_fraction, torch.Generator().manual_seed(derive_seed(SHORT.seed, "split"))
    )
    val_states = training_states[split.val]
    teacher_q = outputs(teacher, val_states)
    int8_q, float_q = outputs(qat_result.quantized, val_states), outputs(qat_result.checkpoint, val_states)
    assert best.action_agreement == pytest.approx(metrics.action_agreement(teacher_q, int8_q))
    # The loss is mse on raw Q-values: the int8 model's, measurably not the float weights'.
    assert best.val_loss == pytest.approx(metrics.mse(teacher_q, int8_q), rel=1e-5)
    assert abs(metrics.mse(teacher_q, float_q) - best.val_loss) > 1e-4


def test_no_convert_returns_only_the_float_checkpoint(teacher, training_states):
    result = qat(random_student(), teacher, training_states, QATConfig(epochs=1, convert=False))
    assert result.quantized is None and result.quantized_param_bytes is None
    assert result.checkpoint.format == "float32"


def test_qat_refuses_an_int8_student(teacher, training_states):
    with pytest.raises(ValueError, match="float32 student"):
        qat(quantize_dynamic(random_student()).checkpoint, teacher, training_states, SHORT)


def test_qat_reports_each_epoch(teacher, training_states):
    epochs = []
    qat(random_student(), teacher, training_states, QATConfig(epochs=2, convert=False), on_epoch=epochs.append)
    assert [record.epoch for record in epochs] == [1, 2]


def test_choice_stops_at_dynamic_when_it_keeps_the_agreement(distilled, teacher):
    student, training_states, held_out = distilled
    # This student keeps 0.987 of its float actions under dynamic PTQ (the students of teachers 1-3: 0.994).
    config = QuantizationChoiceConfig(min_agreement=0.98)
    choice = choose_quantization(student, training_states, held_out, config, teacher=teacher)
    assert [attempt.method for attempt in choice.attempts] == ["dynamic"]
    assert choice.chosen.kept and choice.chosen.selection["agreement_vs_float"] >= 0.98 and choice.passed
    assert choice.chosen.checkpoint.tensors["network.0.weight"].dtype == torch.int8
    # Chosen on the held-out selection rows of `states`, reported on eval_states.
    assert (choice.selection_rows, choice.training_rows) == (1000, 4000)
    assert choice.chosen.report["fidelity"]["n_states"] == len(held_out)


def outlier_student(student):
    """The student with one weight of its hidden layer blown up: per-tensor int8 then rounds most of that layer to 0."""
    tensors = {key: tensor.clone() for key, tensor in student.tensors.items()}
    tensors["network.4.weight"][0, 0] = 40.0 * tensors["network.4.weight"].abs().max()
    return float_checkpoint(tensors, student.arch)


def test_when_ptq_falls_short_qat_meets_its_fair_control(distilled):
    """PTQ loses the outlier network's behaviour; QAT and the same extra training without fake quantization both try to win it back.

    The teacher is the float network itself, so both retrained candidates aim at exactly what PTQ lost.
    """
    student, training_states, held_out = distilled
    float_model = outlier_student(student)
    choice = choose_quantization(float_model, training_states, held_out, teacher=float_model)
    methods = [attempt.method for attempt in choice.attempts]
    assert methods == ["dynamic", "static", "qat", "retrained_ptq"]
    by_method = {attempt.method: attempt for attempt in choice.attempts}
    assert (
        max(by_method["dynamic"].selection["agreement_vs_float"], by_method["static"].selection["agreement_vs_float"])
        < 0.99
    )
    # Fake quantization teaches the weights to survive rounding; the control keeps its outlier and loses as PTQ does
    # (QAT's margin over the control for the students of teachers 0-3: 0.037, 0.032, 0.038, 0.135).
    assert (
        by_method["qat"].selection["agreement_vs_teacher"]
        > by_method["retrained_ptq"].selection["agreement_vs_teacher"] + 0.02
    )
    assert choice.chosen.method == "qat" and "best agreement with the teacher" in choice.chosen.reason
    assert choice.passed == (
        choice.chosen.report["agreement_vs_teacher"] >= choice.chosen.report["float_agreement_vs_teacher"] - 0.01
    )
    assert all(attempt.reason.startswith("not kept") for attempt in choice.attempts if not attempt.kept)


def test_without_a_teacher_the_best_ptq_is_kept_and_the_verdict_fails(distilled):
    student, training_states, held_out = distilled
    choice = choose_quantization(outlier_student(student), training_states, held_out)
    assert [attempt.method for attempt in choice.attempts] == ["dynamic", "static", "qat"]
    assert choice.attempts[-1].checkpoint is None and "teacher" in choice.attempts[-1].reason
    assert choice.chosen.method in ("dynamic", "static") and choice.passed is False


def test_qat_is_kept_only_where_it_beats_the_same_training_without_fake_quantization(distilled, teacher):
    """On a well-behaved student with the bar out of reach, nothing is gained by QAT that plain extra training does not give."""
    student, training_states, held_out = distilled
    config = QuantizationChoiceConfig(min_agreement=1.0, qat=QATConfig(epochs=2))
    choice = choose_quantization(student, training_states, held_out, config, teacher=teacher)
    by_method = {attempt.method: attempt for attempt in choice.attempts}
    best = max(by_method.values(), key=lambda attempt: attempt.selection["agreement_vs_teacher"])
    assert choice.chosen.selection["agreement_vs_teacher"] == best.selection["agreement_vs_teacher"]
    if choice.chosen.method == "qat":
        assert (
            by_method["qat"].selection["agreement_vs_teacher"]
            > by_method["retrained_ptq"].selection["agreement_vs_teacher"]
        )


def test_qat_int8_agrees_with_the_teacher_at_least_as_well_as_ptq(distilled, teacher):
    """The quality bar, with the default QAT settings (the student's own distillation loss, KL at T 3)."""
    student, training_states, held_out = distilled
    teacher_q = outputs(teacher, held_out)
    ptq = quantize_dynamic(student, PTQConfig()).checkpoint
    result = qat(student, teacher, training_states, QATConfig())
    ptq_agreement = metrics.action_agreement(teacher_q, outputs(ptq, held_out))
    qat_agreement = metrics.action_agreement(teacher_q, outputs(result.quantized, held_out))
    assert qat_agreement >= ptq_agreement
