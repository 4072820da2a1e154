"""Fine-tuning a crossover child: regimes, defaults, the balanced dual-teacher loss, int8 export.

The end-to-end quality bars (runbook child, dual-parent children near the bound) are in test_recombination_quality.py.
"""

from __future__ import annotations

import pytest
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.crossover import CrossoverConfig, crossover
from core.finetune import REGIMES, FinetuneConfig, balance_scale, finetune
from core.metrics import action_agreement
from core.networks import QNetworkArch, init_network
from core.quantize import inference_forward
from tests.core import baseline

TEACHER_ARCH = QNetworkArch(input_dim=8, hidden_size=64, output_dim=4)


@pytest.fixture(scope="module")
def train_states() -> torch.Tensor:
    return baseline.training_states()


@pytest.fixture(scope="module")
def eval_states() -> torch.Tensor:
    return baseline.states(2000, seed=7)


@pytest.fixture(scope="module")
def baseline_students() -> tuple[Checkpoint, Checkpoint]:
    return baseline.student(0), baseline.student(1)


@pytest.fixture(scope="module")
def weighted_child(baseline_students) -> Checkpoint:
    student_a, student_b = baseline_students
    return crossover(student_a, student_b, CrossoverConfig(mode="weighted", alpha=0.5)).child


def agreement(reference: Checkpoint, query: Checkpoint, states: torch.Tensor) -> float:
    return action_agreement(inference_forward(reference)(states), inference_forward(query)(states))


@pytest.fixture(scope="module")
def tuned_toward_a(weighted_child, baseline_students, train_states):
    return finetune(weighted_child, baseline_students[0], train_states, FinetuneConfig(regime="medium"))


def test_medium_regime_brings_weighted_child_back_to_parent_a(
    tuned_toward_a, weighted_child, baseline_students, eval_states
):
    student_a = baseline_students[0]
    assert agreement(student_a, weighted_child, eval_states) < 0.7
    assert agreement(student_a, tuned_toward_a.child, eval_states) >= 0.95
    assert tuned_toward_a.before.action_agreement < 0.7
    assert tuned_toward_a.after.action_agreement >= 0.93
    assert tuned_toward_a.after.val_loss < tuned_toward_a.before.val_loss
    assert len(tuned_toward_a.history) == 10 and tuned_toward_a.child_int8 is None
    assert tuned_toward_a.child.metadata["target"] == "a" and tuned_toward_a.config.temperature == 3.0


def test_defaults_depend_on_how_many_parents_are_targets():
    assert FinetuneConfig().temperature == 3.0 and FinetuneConfig(teacher_weight_a=0.0).temperature == 3.0
    assert FinetuneConfig(teacher_weight_a=0.5).temperature == 0.5
    assert FinetuneConfig(teacher_weight_a=0.5, temperature=2.0).temperature == 2.0
    assert FinetuneConfig().adam_betas == (0.9, 0.95) and FinetuneConfig().balance_teachers is True


def test_balance_scale_splits_the_disagreements_by_weight():
    """B's Q-values spread four times wider win nearly every disagreement; the scale restores an even split."""
    generator = torch.Generator().manual_seed(0)
    logits_a, logits_b = torch.randn(4000, 4, generator=generator), 4.0 * torch.randn(4000, 4, generator=generator)
    disagree = logits_a.argmax(1) != logits_b.argmax(1)

    def share_a(scale: float, weight_a: float) -> float:
        mix = weight_a * torch.softmax(logits_a / 0.5, 1) + (1 - weight_a) * torch.softmax(scale * logits_b / 0.5, 1)
        greedy = mix.argmax(1)[disagree]
        taken_a = (greedy == logits_a.argmax(1)[disagree]).float().sum()
        taken_b = (greedy == logits_b.argmax(1)[disagree]).float().sum()
        return float(taken_a / (taken_a + taken_b))

    assert share_a(1.0, 0.5) < 0.2
    for weight_a in (0.5, 0.4):
        scale = balance_scale(logits_a, logits_b, weight_a, 0.5)
        assert share_a(scale, weight_a) == pytest.approx(weight_a, abs=0.01)
    assert balance_scale(logits_a, logits_a * 2.0, 0.5, 0.5) == 1.0  # the parents never disagree


def test_dual_teacher_loss_pulls_the_child_toward_b(
    tuned_toward_a, weighted_child, baseline_students, train_states, eval_states
):
    student_a, student_b = baseline_students
    config = FinetuneConfig(regime="medium", teacher_weight_a=0.5)
    dual = finetune(weighted_child, student_a, train_states, config, reference_b=student_b)
    assert agreement(student_b, dual.child, eval_states) > agreement(student_b, tuned_toward_a.child, eval_states) + 0.2
    assert dual.child.metadata["target"] == "both" and dual.teacher_b_logit_scale != 1.0
    toward_b = finetune(
        weighted_child,
        student_a,
        train_states,
        FinetuneConfig(regime="medium", teacher_weight_a=0.0),
        reference_b=student_b,
    )
    assert agreement(student_b, toward_b.child, eval_states) >= 0.9


def test_dual_teacher_loss_needs_parent_b(weighted_child, baseline_students, train_states):
    with pytest.raises(ValueError, match="teacher_weight_a 0.5 needs reference_b"):
        finetune(weighted_child, baseline_students[0], train_states, FinetuneConfig(teacher_weight_a=0.5))


def test_finetune_is_bit_identical_per_seed_and_reports_each_epoch(weighted_child, baseline_students, train_states):
    seen = []
    config = FinetuneConfig(regime="short", seed=3)
    first = finetune(weighted_child, baseline_students[0], train_states[:1000], config, on_epoch=seen.append)
    second = finetune(weighted_child, baseline_students[0], train_states[:1000], config)
    assert [record.epoch for record in seen] == [1, 2, 3, 4, 5]
    assert all(torch.equal(first.child.tensors[key], second.child.tensors[key]) for key in first.child.tensors)


def test_int8_export_and_int8_inputs(weighted_child, baseline_students, train_states, eval_states):
    config = FinetuneConfig(regime="short", export_int8=True)
    result = finetune(weighted_child, baseline_students[0], train_states[:1000], config)
    assert result.child.format == "float32" and result.child_int8.format == "int8"
    assert agreement(result.child, result.child_int8, eval_states) >= 0.95
    # An int8 child or reference is dequantized before tuning.
    again = finetune(result.child_int8, result.child_int8, train_states[:1000], FinetuneConfig(regime="short"))
    assert again.child.format == "float32"


def test_regimes_match_the_reference_table():
    table = {
        name: (regime.epochs, regime.lr, regime.batch_size, regime.quantization_applied)
        for name, regime in REGIMES.items()
    }
    assert table == {
        "short": (5, 1e-3, 32, "none"),
        "medium": (10, 5e-4, 32, "none"),
        "long": (20, 1e-4, 32, "none"),
        "lr_high": (5, 5e-3, 32, "none"),
        "short_qat": (5, 1e-4, 16, "ptq_dynamic"),
    }
    config = FinetuneConfig(regime="short_qat")
    assert (config.epochs, config.lr, config.batch_size, config.seed, config.loss_fn, config.val_fraction) == (
        5,
        1e-4,
        16,
        42,
        "kl",
        0.1,
    )
    assert config.export_int8 is True and config.early_stopping_patience == 0


def test_explicit_values_override_the_regime():
    config = FinetuneConfig(regime="long", epochs=3)
    assert (config.epochs, config.lr) == (3, 1e-4)
    assert FinetuneConfig().train_config().epochs == 5
    assert FinetuneConfig(quantization_applied="qat_float").export_int8 is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regime": "huge"}, "regime must be one of"),
        ({"teacher_weight_a": 1.5}, "teacher_weight_a must be a number in \\[0, 1\\], got 1.5"),
        ({"quantization_applied": "int4"}, "quantization_applied must be .* got 'int4'"),
        ({"lr": -1.0}, "lr must be a number > 0 or None, got -1.0"),
        ({"dropout_rate": 1.0}, "dropout_rate must be a number in \\[0, 1\\) or None, got 1.0"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**overrides)


def test_mismatched_reference_is_refused(weighted_child, train_states):
    other_arch = QNetworkArch(input_dim=8, hidden_size=64, output_dim=3)
    other = float_checkpoint(init_network(other_arch, 0).state_dict(), other_arch)
    with pytest.raises(
        ValueError,
        match="reference_a is 8-64-64-3 layernorm relu but the child is 8-32-32-4 layernorm relu: input/output dims differ",
    ):
        finetune(weighted_child, other, train_states)


def test_short_qat_trains_through_fake_quantization_and_exports_int8(
    weighted_child, baseline_students, train_states, eval_states
):
    result = finetune(weighted_child, baseline_students[0], train_states, FinetuneConfig(regime="short_qat"))
    assert result.config.quantization_applied == "ptq_dynamic" and result.child_int8.format == "int8"
    assert result.child_int8.quantization["granularity"] == "per_tensor"
    # The loop validated with fake-quantized weights, i.e. the int8 model it exports.
    assert agreement(baseline_students[0], result.child_int8, eval_states) >= 0.85
    assert agreement(result.child, result.child_int8, eval_states) >= 0.97
