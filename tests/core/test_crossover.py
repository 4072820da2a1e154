"""Crossover: each mode's rule, determinism, alignment and its quality bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.crossover import CrossoverConfig, crossover, match_by_activations, match_by_weights, permute_hidden
from core.metrics import action_agreement
from core.networks import QNetworkArch, functional_forward, init_params, student_arch
from core.quantize import dequantize, quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, TrainConfig, train

ARCH = QNetworkArch(input_dim=8, hidden_size=64, output_dim=4)
STATE_DICT_KEYS = ARCH.state_dict_keys()
SORTED_KEYS = sorted(STATE_DICT_KEYS)


def random_parent(seed: int, arch: QNetworkArch = ARCH) -> Checkpoint:
    """A parent whose every tensor (LayerNorm and biases included) is distinct and non-trivial."""
    generator = torch.Generator().manual_seed(seed)
    params = init_params(arch, seed)
    for key in arch.state_dict_keys():
        if not key.endswith("weight") or key.startswith(("network.1", "network.5")):
            params[key] = params[key] + 0.3 * torch.randn(params[key].shape, generator=generator)
    return float_checkpoint(params, arch)


@pytest.fixture(scope="module")
def parent_a() -> Checkpoint:
    return random_parent(0)


@pytest.fixture(scope="module")
def parent_b() -> Checkpoint:
    return random_parent(1)


@pytest.fixture(scope="module")
def eval_states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states=1000, seed=7), 8))


def assert_child_takes(child: Checkpoint, parent_a: Checkpoint, parent_b: Checkpoint, expected: dict[str, str]) -> None:
    for key, source in expected.items():
        parent = parent_a if source == "a" else parent_b
        assert torch.equal(child.tensors[key], parent.tensors[key]), key


def test_random_alpha_one_gives_a_and_zero_gives_b(parent_a, parent_b):
    child_a = crossover(parent_a, parent_b, CrossoverConfig(mode="random", alpha=1.0)).child
    child_b = crossover(parent_a, parent_b, CrossoverConfig(mode="random", alpha=0.0)).child
    assert_child_takes(child_a, parent_a, parent_b, dict.fromkeys(STATE_DICT_KEYS, "a"))
    assert_child_takes(child_b, parent_a, parent_b, dict.fromkeys(STATE_DICT_KEYS, "b"))


def test_random_draws_follow_sorted_key_order_per_seed(parent_a, parent_b):
    for seed in (0, 1, 2):
        draws = np.random.default_rng(seed).random(len(SORTED_KEYS))
        expected = {key: "a" if draw < 0.5 else "b" for key, draw in zip(SORTED_KEYS, draws)}
        result = crossover(parent_a, parent_b, CrossoverConfig(mode="random", alpha=0.5, seed=seed))
        assert result.sources == expected
        assert_child_takes(result.child, parent_a, parent_b, expected)


def test_random_is_bit_identical_for_a_seed(parent_a, parent_b):
    config = CrossoverConfig(mode="random", seed=3)
    first = crossover(parent_a, parent_b, config).child
    second = crossover(parent_a, parent_b, config).child
    assert all(torch.equal(first.tensors[key], second.tensors[key]) for key in STATE_DICT_KEYS)


def test_random_layer_granularity_keeps_linear_bias_and_layernorm_together(parent_a, parent_b):
    blocks = [("network.0", "network.1"), ("network.4", "network.5"), ("network.8",)]
    seen_sources = set()
    for seed in range(8):
        result = crossover(parent_a, parent_b, CrossoverConfig(mode="random", seed=seed, granularity="layer"))
        draws = np.random.default_rng(seed).random(3)
        for block, draw in zip(blocks, draws):
            keys = [key for key in STATE_DICT_KEYS if key.rsplit(".", 1)[0] in block]
            assert {result.sources[key] for key in keys} == {"a" if draw < 0.5 else "b"}
            seen_sources.add(result.sources[keys[0]])
        assert_child_takes(result.child, parent_a, parent_b, result.sources)
    assert seen_sources == {"a", "b"}


def test_layer_mode_alternates_blocks_a_b_a(parent_a, parent_b):
    result = crossover(parent_a, parent_b, CrossoverConfig(mode="layer", alpha=0.9, seed=None))
    expected = {key: "b" if key.startswith(("network.4.", "network.5.")) else "a" for key in STATE_DICT_KEYS}
    assert result.sources == expected
    assert_child_takes(result.child, parent_a, parent_b, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_weighted_is_alpha_a_plus_one_minus_alpha_b(parent_a, parent_b, alpha):
    child = crossover(parent_a, parent_b, CrossoverConfig(mode="weighted", alpha=alpha)).child
    for key in STATE_DICT_KEYS:
        expected = alpha * parent_a.tensors[key] + (1 - alpha) * parent_b.tensors[key]
        torch.testing.assert_close(child.tensors[key], expected, rtol=0, atol=1e-7)
    assert child.format == "float32" and child.arch == parent_a.arch


def test_permuted_network_computes_the_same_function(parent_b, eval_states):
    generator = torch.Generator().manual_seed(5)
    params = parent_b.tensors
    perm_1 = torch.randperm(64, generator=generator)
    perm_2 = torch.randperm(64, generator=generator)
    permuted = permute_hidden(ARCH, params, [perm_1, perm_2])
    assert not torch.equal(permuted["network.4.weight"], params["network.4.weight"])
    torch.testing.assert_close(
        functional_forward(ARCH, permuted, eval_states),
        functional_forward(ARCH, params, eval_states),
        rtol=1e-5,  # a permutation reorders each dot product's sum: float32 rounding only
        atol=1e-5,
    )


def test_permute_hidden_rejects_a_non_permutation(parent_b):
    with pytest.raises(ValueError, match="perms\\[1\\] must be a permutation of range\\(64\\)"):
        permute_hidden(ARCH, parent_b.tensors, [torch.arange(64), torch.zeros(64, dtype=torch.int64)])


@pytest.mark.parametrize("match", ["activations", "weights"])
def test_alignment_recovers_a_hidden_permutation(parent_a, eval_states, match):
    generator = torch.Generator().manual_seed(11)
    perm_1, perm_2 = torch.randperm(64, generator=generator), torch.randperm(64, generator=generator)
    shuffled = permute_hidden(ARCH, parent_a.tensors, [perm_1, perm_2])
    if match == "activations":
        (found_1, found_2), similarity = match_by_activations(ARCH, parent_a.tensors, shuffled, eval_states)
        # Every live unit finds its copy (correlation 1); a dead one correlates 0 with all.
        assert min(similarity) > 0.95
    else:
        (found_1, found_2), _ = match_by_weights(ARCH, parent_a.tensors, shuffled)
    # Aligning a shuffled copy of A back onto A undoes the shuffle exactly.
    realigned = permute_hidden(ARCH, shuffled, [found_1, found_2])
    assert all(torch.equal(realigned[key], parent_a.tensors[key]) for key in STATE_DICT_KEYS)


def test_aligned_alpha_one_without_repair_is_a(parent_a, parent_b, eval_states):
    result = crossover(
        parent_a, parent_b, CrossoverConfig(mode="aligned", alpha=1.0, repair_layernorm=False), eval_states
    )
    assert all(torch.equal(result.child.tensors[key], parent_a.tensors[key]) for key in STATE_DICT_KEYS)
    assert result.permutations is not None and result.permutations[0].shape == (64,)


def test_aligned_alpha_zero_computes_b(parent_a, parent_b, eval_states):
    child = crossover(parent_a, parent_b, CrossoverConfig(mode="aligned", alpha=0.0), eval_states).child
    torch.testing.assert_close(
        functional_forward(ARCH, child.tensors, eval_states),
        functional_forward(ARCH, parent_b.tensors, eval_states),
        rtol=0,
        atol=1e-4,
    )


def test_aligned_by_activations_needs_states(parent_a, parent_b):
    with pytest.raises(ValueError, match="states are required"):
        crossover(parent_a, parent_b, CrossoverConfig(mode="aligned"))
    # Weight matching without the LayerNorm repair needs no data.
    child = crossover(
        parent_a, parent_b, CrossoverConfig(mode="aligned", align_by="weights", repair_layernorm=False)
    ).child
    assert child.format == "float32"


def test_mismatched_architectures_name_the_shapes(parent_a):
    small = random_parent(2, QNetworkArch(input_dim=8, hidden_size=32, output_dim=4))
    with pytest.raises(
        ValueError,
        match=r"A 8-64-64-4 layernorm relu and B 8-32-32-4 layernorm relu: hidden_sizes \[64, 64\] vs \[32, 32\]",
    ):
        crossover(parent_a, small, CrossoverConfig())


def test_int8_parents_are_dequantized(parent_a, parent_b):
    quantized_a = quantize_dynamic(parent_a).checkpoint
    assert quantized_a.format == "int8"
    child = crossover(quantized_a, parent_b, CrossoverConfig(mode="weighted", alpha=1.0)).child
    assert child.format == "float32"
    for key, tensor in dequantize(quantized_a).items():
        torch.testing.assert_close(child.tensors[key], tensor, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "uniform"),
        ("alpha", 1.5),
        ("alpha", True),
        ("seed", -1),
        ("granularity", "neuron"),
        ("align_by", "gradients"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .*{value!r}"):
        CrossoverConfig(**{field: value})


# Quality bar: two students distilled from one teacher with different seeds.


def distilled_student(teacher: Checkpoint, states: torch.Tensor, seed: int) -> Checkpoint:
    """A baseline student: 25 epochs, batch 64, lr 1e-3, soft KL at T 3 (the reference's distillation)."""
    arch = student_arch(teacher.arch)
    teacher_q = functional_forward(teacher.arch, teacher.tensors, states)
    result = train(
        arch,
        init_params(arch, seed),
        states,
        [TeacherTarget(teacher_q)],
        TrainConfig(epochs=25, lr=1e-3, batch_size=64, seed=seed),
    )
    return float_checkpoint(result.state_dict, arch)


@pytest.fixture(scope="module")
def same_teacher_students() -> tuple[Checkpoint, Checkpoint, torch.Tensor]:
    teacher = float_checkpoint(init_params(ARCH, 0), ARCH)
    states = torch.from_numpy(synthetic_states(SyntheticStates(n_states=5000, seed=42), 8))
    return distilled_student(teacher, states, seed=1), distilled_student(teacher, states, seed=2), states


def min_parent_agreement(child: Checkpoint, parent_a: Checkpoint, parent_b: Checkpoint, states: torch.Tensor) -> float:
    child_q = functional_forward(child.arch, child.tensors, states)
    return min(
        action_agreement(functional_forward(parent_a.arch, parent_a.tensors, states), child_q),
        action_agreement(functional_forward(parent_b.arch, parent_b.tensors, states), child_q),
    )


def test_aligned_keeps_both_students_far_better_than_weighted(same_teacher_students, eval_states):
    student_a, student_b, states = same_teacher_students
    weighted = crossover(student_a, student_b, CrossoverConfig(mode="weighted", alpha=0.5)).child
    aligned = crossover(student_a, student_b, CrossoverConfig(mode="aligned", alpha=0.5), states).child
    weighted_score = min_parent_agreement(weighted, student_a, student_b, eval_states)
    aligned_score = min_parent_agreement(aligned, student_a, student_b, eval_states)
    assert aligned_score >= 0.85
    assert aligned_score >= weighted_score + 0.1
