"""Fine-tuning a crossover child: regimes, the quality bar, the dual-teacher loss, int8 export."""

from __future__ import annotations

import pytest
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.crossover import CrossoverConfig, crossover
from core.finetune import REGIMES, FinetuneConfig, finetune
from core.metrics import action_agreement
from core.networks import QNetworkArch, init_network, student_arch
from core.quantize import inference_forward
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, TrainConfig, train

TEACHER_ARCH = QNetworkArch(input_dim=8, hidden_size=64, output_dim=4)


def distilled_student(teacher_seed: int, states: torch.Tensor, seed: int) -> Checkpoint:
    """A baseline student of a seeded 8-64-4 teacher: 25 epochs, batch 64, lr 1e-3."""
    teacher = init_network(TEACHER_ARCH, teacher_seed)
    arch = student_arch(TEACHER_ARCH)
    with torch.no_grad():
        teacher_q = teacher.eval()(states)
    result = train(init_network(arch, seed), states, [TeacherTarget(teacher_q)], TrainConfig(epochs=25, lr=1e-3, batch_size=64, seed=seed))
    return float_checkpoint(result.state_dict, arch)


@pytest.fixture(scope="module")
def train_states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states=5000, seed=42), 8))


@pytest.fixture(scope="module")
def eval_states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states=2000, seed=7), 8))


@pytest.fixture(scope="module")
def baseline_students(train_states) -> tuple[Checkpoint, Checkpoint]:
    return distilled_student(0, train_states, seed=0), distilled_student(1, train_states, seed=1)


@pytest.fixture(scope="module")
def weighted_child(baseline_students) -> Checkpoint:
    student_a, student_b = baseline_students
    return crossover(student_a, student_b, CrossoverConfig(mode="weighted", alpha=0.5)).child


def agreement(reference: Checkpoint, query: Checkpoint, states: torch.Tensor) -> float:
    return action_agreement(inference_forward(reference)(states), inference_forward(query)(states))


@pytest.fixture(scope="module")
def tuned_toward_a(weighted_child, baseline_students, train_states):
    return finetune(weighted_child, baseline_students[0], train_states, FinetuneConfig(regime="medium"))


def test_medium_regime_brings_weighted_child_back_to_parent_a(tuned_toward_a, weighted_child, baseline_students, eval_states):
    student_a = baseline_students[0]
    assert agreement(student_a, weighted_child, eval_states) < 0.6
    assert agreement(student_a, tuned_toward_a.child, eval_states) >= 0.92
    assert tuned_toward_a.before.action_agreement < 0.6
    assert tuned_toward_a.after.action_agreement >= 0.9
    assert tuned_toward_a.after.val_loss < tuned_toward_a.before.val_loss
    assert len(tuned_toward_a.history) == 10 and tuned_toward_a.child_int8 is None


def test_dual_teacher_loss_pulls_the_child_toward_b(tuned_toward_a, weighted_child, baseline_students, train_states, eval_states):
    student_a, student_b = baseline_students
    config = FinetuneConfig(regime="medium", teacher_weight_a=0.5)
    dual = finetune(weighted_child, student_a, train_states, config, reference_b=student_b)
    assert agreement(student_b, dual.child, eval_states) > agreement(student_b, tuned_toward_a.child, eval_states) + 0.2
    toward_b = finetune(weighted_child, student_a, train_states, FinetuneConfig(regime="medium", teacher_weight_a=0.0), reference_b=student_b)
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
    table = {name: (regime.epochs, regime.lr, regime.batch_size, regime.quantization_applied) for name, regime in REGIMES.items()}
    assert table == {
        "short": (5, 1e-3, 32, "none"),
        "medium": (10, 5e-4, 32, "none"),
        "long": (20, 1e-4, 32, "none"),
        "lr_high": (5, 5e-3, 32, "none"),
        "short_qat": (5, 1e-4, 16, "ptq_dynamic"),
    }
    config = FinetuneConfig(regime="short_qat")
    assert (config.epochs, config.lr, config.batch_size, config.seed, config.loss_fn, config.val_fraction) == (5, 1e-4, 16, 42, "kl", 0.1)
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
        ({"lr": -1.0}, "lr must be > 0, got -1.0"),
        ({"dropout_rate": 1.0}, "dropout_rate must be in \\[0, 1\\) or None, got 1.0"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**overrides)


def test_mismatched_reference_is_refused(weighted_child, train_states):
    other = float_checkpoint(init_network(TEACHER_ARCH, 0).state_dict(), TEACHER_ARCH)
    with pytest.raises(ValueError, match="reference_a is 8-64-64-4 but the child is 8-32-32-4"):
        finetune(weighted_child, other, train_states)


def test_short_qat_trains_through_fake_quantization_and_exports_int8(weighted_child, baseline_students, train_states, eval_states):
    result = finetune(weighted_child, baseline_students[0], train_states, FinetuneConfig(regime="short_qat"))
    assert result.config.quantization_applied == "ptq_dynamic" and result.child_int8.format == "int8"
    assert result.child_int8.quantization["granularity"] == "per_tensor"
    # The loop validated with fake-quantized weights, i.e. the int8 model it exports.
    assert agreement(baseline_students[0], result.child_int8, eval_states) >= 0.85
    assert agreement(result.child, result.child_int8, eval_states) >= 0.97
