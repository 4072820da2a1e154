"""Distillation: reproducibility at any thread count, the shared and teacher-subset inits, int8 teachers, config checks and per-student quality guards."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.artifacts import decode, encode, sha256_hex
from core.distill import DistillConfig, distill, initial_seed
from core.metrics import action_agreement, prob_similarity
from core.networks import QNetworkArch, functional_forward, init_network
from core.quantize import quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.training import training_split
from tests.core.baseline import teacher, training_states

BASELINE = DistillConfig(epochs=25, batch_size=64)


@pytest.fixture(scope="module")
def baseline_results():
    return {seed: distill(teacher(seed), training_states(), BASELINE) for seed in (0, 1)}


@pytest.fixture(scope="module")
def teacher_init_results():
    return {
        seed: distill(teacher(seed), training_states(), dataclasses.replace(BASELINE, init="teacher"))
        for seed in (0, 1)
    }


@pytest.fixture(scope="module")
def fresh_states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(5000, 7), 8))


def test_distill_is_bit_identical_per_seed():
    states = synthetic_states(SyntheticStates(600, 1), 8)
    config = DistillConfig(epochs=3, seed=11)
    first, second = distill(teacher(0), states, config), distill(teacher(0), states, config)
    assert all(torch.equal(first.student.tensors[key], second.student.tensors[key]) for key in first.student.tensors)
    assert sha256_hex(encode(first.student)) == sha256_hex(encode(second.student))
    assert first.history == second.history
    other = distill(teacher(0), states, dataclasses.replace(config, seed=12))
    assert sha256_hex(encode(other.student)) != sha256_hex(encode(first.student))


def test_distill_is_bit_identical_at_any_thread_count():
    """Training runs on one intra-op thread whatever the caller set, and the caller's setting is restored."""
    states = synthetic_states(SyntheticStates(2000, 1), 8)
    previous = torch.get_num_threads()
    digests = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            digests.append(sha256_hex(encode(distill(teacher(0), states, DistillConfig(epochs=2, seed=3)).student)))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
    assert len(set(digests)) == 1


def test_shared_init_depends_on_init_seed_alone():
    """Students meant to be merged start from one point, whatever their teacher or training seed."""
    arch = DistillConfig().student_arch(QNetworkArch())
    shared = init_network(arch, initial_seed(DistillConfig(seed=0))).state_dict()
    other_seed = init_network(arch, initial_seed(DistillConfig(seed=5))).state_dict()
    other_init = init_network(arch, initial_seed(DistillConfig(init_seed=1))).state_dict()
    assert all(torch.equal(shared[key], other_seed[key]) for key in shared)
    assert not torch.equal(shared["network.0.weight"], other_init["network.0.weight"])
    assert initial_seed(DistillConfig(init="random", seed=0)) != initial_seed(DistillConfig(init="random", seed=1))
    states = synthetic_states(SyntheticStates(300, 1), 8)
    students = [distill(teacher(seed), states, DistillConfig(epochs=1, seed=seed)) for seed in (0, 1)]
    assert students[0].initial.train_loss != students[1].initial.train_loss  # same start, different teachers


def test_student_is_the_reference_width_and_records_its_origin():
    states = synthetic_states(SyntheticStates(300, 1), 8)
    result = distill(teacher(0), states, DistillConfig(epochs=1))
    assert result.student.arch == QNetworkArch(8, (32, 32), 4, dropout_rate=0.0)
    assert result.student.format == "float32"
    assert result.student.metadata["teacher_format"] == "float32"
    assert result.student.metadata["config"]["temperature"] == 3.0
    assert not result.teacher_dequantized
    wide = distill(teacher(0), states, DistillConfig(epochs=1, hidden_sizes=(48, None), dropout_rate=0.05))
    assert wide.student.arch == QNetworkArch(8, (48, 32), 4, dropout_rate=0.05)


def test_checkpoint_metadata_holds_the_curves():
    states = synthetic_states(SyntheticStates(300, 1), 8)
    result = distill(teacher(0), states, DistillConfig(epochs=3))
    history = decode(encode(result.student)).metadata["history"]
    assert history == [dataclasses.asdict(record) for record in result.history]
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[0]["train_hard_loss"] is None  # alpha 1: no hard term
    json.dumps(history, allow_nan=False)


@pytest.mark.parametrize("init", ["shared", "teacher"])
def test_training_never_sees_the_validation_rows(init):
    """Changing only the held-out rows changes the validation figures but not a single training step."""
    states = synthetic_states(SyntheticStates(600, 1), 8)
    config = DistillConfig(epochs=3, seed=5, init=init)
    val_rows = training_split(len(states), config.train_config()).val.numpy()
    moved = states.copy()
    moved[val_rows] += 1.0
    first, second = distill(teacher(0), states, config), distill(teacher(0), moved, config)
    assert [record.train_loss for record in first.history] == [record.train_loss for record in second.history]
    assert first.initial.train_loss == second.initial.train_loss
    assert first.history[-1].val_loss != second.history[-1].val_loss


def test_teacher_init_needs_a_student_no_wider_than_its_teacher():
    states = synthetic_states(SyntheticStates(300, 1), 8)
    with pytest.raises(ValueError, match=r"every student width <= the teacher's \(\[64, 64\]\), got \[96, 96\]"):
        distill(teacher(0), states, DistillConfig(epochs=1, hidden_sizes=(96, 96), init="teacher"))
    assert distill(teacher(0), states, DistillConfig(epochs=1, hidden_sizes=(96, 96))).student.arch.hidden_sizes == (
        96,
        96,
    )


def test_a_full_width_teacher_init_is_the_teacher():
    """Keeping every unit reproduces the teacher, so the student starts in full agreement."""
    states = synthetic_states(SyntheticStates(1000, 1), 8)
    result = distill(teacher(0), states, DistillConfig(epochs=1, hidden_sizes=(64, 64), init="teacher"))
    assert result.initial.action_agreement == 1.0
    assert result.initial.prob_similarity > 0.9999


def test_int8_teacher_is_dequantized():
    states = synthetic_states(SyntheticStates(300, 1), 8)
    result = distill(quantize_dynamic(teacher(0)).checkpoint, torch.from_numpy(states), DistillConfig(epochs=2))
    assert result.teacher_dequantized
    assert result.student.metadata["teacher_format"] == "int8"
    assert result.history[-1].action_agreement > result.initial.action_agreement


def test_states_must_fit_the_teacher():
    with pytest.raises(ValueError, match="width 6"):
        distill(teacher(0), np.zeros((100, 6), dtype=np.float32), DistillConfig(epochs=1))
    with pytest.raises(ValueError, match="2-D"):
        distill(teacher(0), np.zeros(8, dtype=np.float32), DistillConfig(epochs=1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("lr", -1e-3),
        ("alpha", 1.5),
        ("temperature", 0.0),
        ("val_fraction", 0.0),
        ("val_fraction", 1.0),
        ("hidden_sizes", (0, 32)),
        ("dropout_rate", 1.0),
        ("init", "xavier"),
        ("init_seed", -1),
        ("adam_betas", (0.9, 1.0)),
        ("ema_decay", 1.0),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**{field: value})


@pytest.mark.parametrize("seed", [0, 1])
def test_baseline_students_keep_the_teachers_probabilities(baseline_results, seed):
    """Held-out (val split) probability similarity at T=3, bar 0.985 (the reference reaches 0.988)."""
    final = baseline_results[seed].final
    assert final.prob_similarity >= 0.985
    # Val loss still falls late in training: the 25-epoch budget limits the student, not over-fitting.
    assert baseline_results[seed].best_epoch >= 20


@pytest.mark.parametrize("seed", [0, 1])
def test_baseline_students_stay_in_the_reference_range(baseline_results, fresh_states, seed):
    """Each student against regressions (the reference reaches 0.85-0.91 held-out agreement).

    The bar the students are held to (mean >= 0.90 over teachers 0-5 on fresh
    states) is in test_recombination_quality.py.
    """
    assert baseline_results[seed].final.action_agreement >= 0.86
    teacher_q = functional_forward(teacher(seed).arch, teacher(seed).tensors, fresh_states)
    student_q = functional_forward(
        baseline_results[seed].student.arch, baseline_results[seed].student.tensors, fresh_states
    )
    assert action_agreement(teacher_q, student_q) >= 0.88
    assert prob_similarity(teacher_q, student_q, BASELINE.temperature) >= 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_teacher_init_starts_close_to_the_teacher(teacher_init_results, seed):
    """Before any training step the subset student already agrees on most held-out states (random init: 0.20)."""
    assert teacher_init_results[seed].initial.action_agreement >= 0.7
