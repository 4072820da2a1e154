"""Every stage works for every member of the architecture matrix (depths 1-3, norm on and off, every activation).

Each test runs a stage end to end on a small budget and checks what a user
relies on: the output keeps the layout, the int8 model tracks its float
original, alignment undoes a hidden permutation, validators report finite
figures. Quality bars on the reference layout live in the per-stage tests.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core import metrics
from core.artifacts import Checkpoint, decode, encode, float_checkpoint
from core.crossover import CrossoverConfig, crossover, match_by_activations, match_by_weights, permute_hidden
from core.distill import DistillConfig, distill
from core.finetune import FinetuneConfig, finetune
from core.networks import init_params, rekey
from core.qat import QATConfig, qat
from core.quantize import PTQConfig, inference_forward, quantize
from core.search import SearchConfig, run_search, search_states
from core.states import SyntheticStates, synthetic_states
from core.validate import (
    DistillationValidationConfig,
    QuantizedValidationConfig,
    RecombinationValidationConfig,
    validate_distillation,
    validate_quantized,
    validate_recombination,
)
from tests.archs import ARCH_IDS, ARCH_MATRIX

FAST = {"latency_warmup": 0, "latency_repeats": 2}


def teacher(arch_id: str, seed: int = 0) -> Checkpoint:
    arch = ARCH_MATRIX[arch_id]
    generator = torch.Generator().manual_seed(seed)
    params = {
        key: tensor + 0.1 * torch.randn(tensor.shape, generator=generator)
        for key, tensor in init_params(arch, seed).items()
    }
    return float_checkpoint(params, arch)


def states_for(arch_id: str, n: int = 600, seed: int = 5) -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n, seed), ARCH_MATRIX[arch_id].input_dim))


def agreement(reference: Checkpoint, query: Checkpoint, states: torch.Tensor) -> float:
    with torch.no_grad():
        return metrics.action_agreement(inference_forward(reference)(states), inference_forward(query)(states))


@pytest.fixture(scope="module", params=ARCH_IDS)
def arch_id(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def students(arch_id) -> tuple[Checkpoint, Checkpoint, Checkpoint]:
    """A teacher and two students of it (teacher-subset init, different seeds)."""
    parent = teacher(arch_id)
    states = states_for(arch_id)
    made = [distill(parent, states, DistillConfig(epochs=3, seed=seed)).student for seed in (1, 2)]
    return parent, made[0], made[1]


@pytest.mark.parametrize("init", ["teacher", "random"])
def test_distill_keeps_the_layout_and_learns(arch_id, init):
    parent = teacher(arch_id)
    states = states_for(arch_id)
    result = distill(parent, states, DistillConfig(epochs=4, init=init, seed=0))
    arch = result.student.arch
    assert (arch.depth, arch.norm, arch.activation) == (parent.arch.depth, parent.arch.norm, parent.arch.activation)
    assert arch.hidden_sizes == tuple(min(width, max(16, width // 2)) for width in parent.arch.hidden_sizes)
    assert set(result.student.tensors) == set(arch.state_dict_keys())
    assert result.final.action_agreement > result.initial.action_agreement or result.final.action_agreement >= 0.8
    assert decode(encode(result.student)).arch == arch


@pytest.mark.parametrize(
    ("mode", "granularity"),
    [("dynamic", "per_tensor"), ("dynamic", "per_channel"), ("static", "per_tensor"), ("static", "per_channel")],
)
def test_ptq_tracks_the_float_model(arch_id, mode, granularity):
    float_ckpt = teacher(arch_id)
    states = states_for(arch_id)
    quantized = quantize(float_ckpt, PTQConfig(mode=mode, granularity=granularity), states).checkpoint
    assert {quantized.tensors[block.weight].dtype for block in quantized.arch.blocks} == {torch.int8}
    assert decode(encode(quantized)).tensors.keys() == quantized.tensors.keys()
    assert agreement(float_ckpt, quantized, states_for(arch_id, seed=9)) >= 0.9


def test_qat_exports_int8_that_tracks_the_teacher(arch_id, students):
    parent, student, _ = students
    states = states_for(arch_id)
    result = qat(student, parent, states, QATConfig(epochs=2))
    assert result.quantized.format == "int8" and result.quantized.arch == student.arch
    assert agreement(result.checkpoint, result.quantized, states_for(arch_id, seed=9)) >= 0.9


@pytest.mark.parametrize("mode", ["random", "layer", "weighted", "aligned"])
def test_crossover_every_mode(arch_id, students, mode):
    _, student_a, student_b = students
    states = states_for(arch_id)
    result = crossover(student_a, student_b, CrossoverConfig(mode=mode, alpha=0.5, seed=0), states)
    assert result.child.arch == student_a.arch
    assert set(result.child.tensors) == set(student_a.arch.state_dict_keys())
    if mode == "aligned":
        assert len(result.permutations) == student_a.arch.depth


@pytest.mark.parametrize("align_by", ["activations", "weights"])
def test_alignment_undoes_a_hidden_permutation_through_any_depth(arch_id, align_by):
    parent = teacher(arch_id)
    arch = parent.arch
    generator = torch.Generator().manual_seed(4)
    perms = [torch.randperm(width, generator=generator) for width in arch.hidden_sizes]
    shuffled = permute_hidden(arch, parent.tensors, perms)
    states = states_for(arch_id, n=2000)
    with torch.no_grad():
        torch.testing.assert_close(
            inference_forward(float_checkpoint(shuffled, arch))(states),
            inference_forward(parent)(states),
            rtol=1e-4,
            atol=1e-5,
        )
    found, _ = (
        match_by_activations(arch, parent.tensors, shuffled, states)
        if align_by == "activations"
        else match_by_weights(arch, parent.tensors, shuffled)
    )
    realigned = permute_hidden(arch, shuffled, found)
    assert all(torch.equal(realigned[key], parent.tensors[key]) for key in arch.state_dict_keys())


@pytest.mark.parametrize("teacher_weight_a", [1.0, 0.5])
def test_finetune_single_and_dual(arch_id, students, teacher_weight_a):
    _, student_a, student_b = students
    states = states_for(arch_id)
    child = crossover(student_a, student_b, CrossoverConfig(mode="weighted"), states).child
    result = finetune(
        child,
        student_a,
        states,
        FinetuneConfig(regime="short", teacher_weight_a=teacher_weight_a),
        reference_b=student_b,
    )
    assert result.child.arch == child.arch
    assert result.after.val_loss <= result.before.val_loss


def test_validators_report_on_every_member(arch_id, students):
    parent, student_a, student_b = students
    states = states_for(arch_id, seed=9)
    distillation = validate_distillation(parent, student_a, states, DistillationValidationConfig(**FAST))
    assert 0 < distillation["metrics"]["param_ratio"] < 1
    quantized = quantize(student_a).checkpoint
    report = validate_quantized(
        student_a, quantized, states, QuantizedValidationConfig(throughput_batch_size=0, **FAST)
    )
    assert report["fidelity"]["action_agreement"] >= 0.9
    recombination = validate_recombination(student_a, student_a, student_b, states, RecombinationValidationConfig())
    assert recombination["summary"]["child_agrees_with_parent_a"] == 1.0


def test_search_runs_on_every_member(arch_id, students):
    _, student_a, student_b = students
    config = SearchConfig(
        preset="custom", crossover_modes=("aligned",), alpha_values=(0.5,), finetune_regimes=("short",)
    )
    run = run_search(
        student_a, student_b, config, search_states(config, student_a.arch.input_dim, 600, states_for(arch_id))
    )
    assert [result.child.arch for result in run.results] == [student_a.arch]
    assert 0.0 <= run.results[0].metrics["primary_metric"] <= 1.0


def test_dropout_in_the_layout_trains_and_evaluates(arch_id):
    source = teacher(arch_id)
    arch = dataclasses.replace(source.arch, dropout_rate=0.2)
    parent = float_checkpoint(rekey(source.tensors, source.arch, arch), arch)
    result = distill(parent, states_for(arch_id), DistillConfig(epochs=2, dropout_rate=0.2))
    assert result.student.arch.dropout_rate == 0.2 and set(result.student.tensors) == set(
        result.student.arch.state_dict_keys()
    )
