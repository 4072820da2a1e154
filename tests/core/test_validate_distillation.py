"""validate_distillation: report body, thresholds, non-gating checks, robustness slices, rollouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.distill import DistillConfig, distill
from core.mdp import LinearMDP, greedy_returns, initial_states
from core.networks import QNetworkArch, init_network, student_arch
from core.quantize import inference_forward, quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.validate import DistillationValidationConfig, relative_return_drop, robustness_slices, validate_distillation

FAST = {"latency_repeats": 3, "latency_warmup": 1}


@pytest.fixture(scope="module")
def teacher() -> Checkpoint:
    return float_checkpoint(init_network(QNetworkArch(), 0).state_dict())


@pytest.fixture(scope="module")
def student(teacher) -> Checkpoint:
    """The baseline student: 5000 states, 25 epochs, batch 64."""
    training_states = synthetic_states(SyntheticStates(5000, 42), 8)
    return distill(teacher, training_states, DistillConfig(epochs=25, batch_size=64)).student


@pytest.fixture(scope="module")
def eval_states() -> np.ndarray:
    """Disjoint from the training draw (different seed)."""
    return synthetic_states(SyntheticStates(1000, 7), 8)


@pytest.fixture(scope="module")
def report(teacher, student, eval_states) -> dict:
    return validate_distillation(teacher, student, eval_states, DistillationValidationConfig(**FAST))


def test_report_body(report):
    assert report["kind"] == "validate-distillation"
    assert report["schema_version"] == "1.0"
    metrics = report["metrics"]
    assert set(metrics["top_k_agreements"]) == {"1", "2", "3"}
    assert metrics["top_k_agreements"]["1"] == metrics["action_agreement"]
    assert metrics["top_k_agreements"]["3"] >= metrics["top_k_agreements"]["2"] >= metrics["action_agreement"]
    assert (metrics["parent_param_count"], metrics["student_param_count"]) == (5252, 1604)
    assert metrics["param_ratio"] == pytest.approx(1604 / 5252)
    assert metrics["latency_ratio"] == pytest.approx(metrics["student_inference_ms"] / metrics["parent_inference_ms"])
    assert set(metrics["robustness_slice_agreements"]) == {"low_resource", "high_threat", "sparse_obs"}
    assert report["states"] == {"count": 1000, "input_dim": 8}
    assert report["thresholds"]["min_action_agreement"] == 0.85
    assert report["rollout"] is None and report["label_metrics"] is None


def test_distilled_student_passes_the_default_gates(report):
    assert report["passed"], report["failed_checks"]
    assert report["metrics"]["action_agreement"] >= 0.85
    assert report["metrics"]["kl_divergence"] < 0.05
    assert set(report["checks"]) == {
        "min_action_agreement",
        "max_kl_divergence",
        "max_mse",
        "min_cosine_similarity",
        "max_param_ratio",
    }
    assert all(check["passed"] for name, check in report["checks"].items() if check["gates"])


def test_cosine_is_reported_but_does_not_gate_by_default(teacher, student, eval_states):
    strict = DistillationValidationConfig(min_cosine_similarity=1.0, **FAST)
    report = validate_distillation(teacher, student, eval_states, strict)
    cosine = report["checks"]["min_cosine_similarity"]
    assert cosine == {
        "value": report["metrics"]["mean_cosine_similarity"],
        "threshold": 1.0,
        "passed": False,
        "gates": False,
    }
    assert report["passed"] and "min_cosine_similarity" not in report["failed_checks"]
    assert any("cosine" in note for note in report["notes"])
    gated = validate_distillation(
        teacher, student, eval_states, DistillationValidationConfig(min_cosine_similarity=1.0, gate_cosine=True, **FAST)
    )
    assert not gated["passed"] and gated["failed_checks"] == ["min_cosine_similarity"]


def test_latency_never_gates_unless_asked(teacher, student, eval_states):
    reported = validate_distillation(
        teacher, student, eval_states, DistillationValidationConfig(max_latency_ratio=1e-6, **FAST)
    )
    assert reported["checks"]["max_latency_ratio"]["passed"] is False
    assert reported["passed"]
    gated = validate_distillation(
        teacher, student, eval_states, DistillationValidationConfig(max_latency_ratio=1e-6, gate_latency=True, **FAST)
    )
    assert gated["failed_checks"] == ["max_latency_ratio"]


def test_thresholds_fail_the_report(teacher, student, eval_states):
    config = DistillationValidationConfig(
        min_action_agreement=1.0, max_mse=0.0, max_mae=0.0, max_param_ratio=0.1, **FAST
    )
    report = validate_distillation(teacher, student, eval_states, config)
    assert not report["passed"]
    assert report["failed_checks"] == ["min_action_agreement", "max_mse", "max_param_ratio", "max_mae"]


def test_untrained_student_fails(teacher, eval_states):
    arch = student_arch(teacher.arch)
    untrained = float_checkpoint(init_network(arch, 3).state_dict(), arch)
    report = validate_distillation(teacher, untrained, eval_states, DistillationValidationConfig(**FAST))
    assert not report["passed"]
    assert "min_action_agreement" in report["failed_checks"]


def test_robustness_slices_follow_the_reference_and_are_seeded(eval_states, teacher, student):
    states = torch.from_numpy(eval_states)
    slices = robustness_slices(states, 42)
    rng = np.random.default_rng(42)
    noise = rng.standard_normal(eval_states.shape).astype(np.float32)
    keep = rng.random(eval_states.shape) > 0.5
    torch.testing.assert_close(slices["low_resource"], states * 0.5)
    torch.testing.assert_close(slices["high_threat"], states + 0.25 * torch.from_numpy(noise))
    torch.testing.assert_close(slices["sparse_obs"], states * torch.from_numpy(keep.astype(np.float32)))
    config = DistillationValidationConfig(min_robustness_action_agreement=0.999, **FAST)
    report = validate_distillation(teacher, student, eval_states, config)
    assert {name for name in report["checks"] if name.startswith("min_robustness")} == {
        "min_robustness_action_agreement.low_resource",
        "min_robustness_action_agreement.high_threat",
        "min_robustness_action_agreement.sparse_obs",
    }
    assert not report["passed"]


def test_rollouts_are_deterministic_and_a_model_matches_itself(teacher, student, eval_states):
    config = DistillationValidationConfig(rollout_episodes=6, rollout_seed=3, max_relative_return_drop=0.5, **FAST)
    first = validate_distillation(teacher, student, eval_states, config)["rollout"]
    second = validate_distillation(teacher, student, eval_states, config)["rollout"]
    assert first == second
    assert first["n_episodes"] == 6 and first["max_steps"] == 50 and first["base_seed"] == 3
    itself = validate_distillation(teacher, teacher, eval_states, config)
    assert itself["rollout"]["relative_drop"] == 0.0
    assert itself["checks"]["max_relative_return_drop"]["passed"]


def test_linear_mdp_follows_the_reference_dynamics(teacher):
    mdp = LinearMDP.from_seed(5, 8, 4)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(mdp.transition, 0.12 * rng.standard_normal((4, 8, 8)))
    np.testing.assert_array_equal(mdp.offset, 0.12 * rng.standard_normal((4, 8)))
    starts = initial_states(5, 2, 8)
    np.testing.assert_array_equal(starts[1], np.random.default_rng(5 + 1_000_003).standard_normal(8))
    # One step by hand for a constant policy.
    always_two = lambda states: torch.nn.functional.one_hot(torch.full((states.shape[0],), 2), 4).float()  # noqa: E731
    returns = greedy_returns(always_two, mdp, starts, max_steps=2)
    first_reward = starts @ mdp.state_reward + mdp.action_reward[2]
    second_states = starts @ mdp.transition[2].T + mdp.offset[2]
    np.testing.assert_allclose(returns, first_reward + second_states @ mdp.state_reward + mdp.action_reward[2])


def test_relative_return_drop():
    assert relative_return_drop(10.0, 8.0) == pytest.approx(0.2)
    assert relative_return_drop(10.0, 12.0) == 0.0
    assert relative_return_drop(-10.0, -12.0) == pytest.approx(0.2)
    assert relative_return_drop(0.0, -1.0) == 1.0


def test_int8_student_is_validated_through_the_int8_path(teacher, student, eval_states):
    quantized = quantize_dynamic(student).checkpoint
    report = validate_distillation(teacher, quantized, eval_states, DistillationValidationConfig(**FAST))
    with torch.inference_mode():
        expected = (
            (
                inference_forward(teacher)(torch.from_numpy(eval_states)).argmax(1)
                == inference_forward(quantized)(torch.from_numpy(eval_states)).argmax(1)
            )
            .float()
            .mean()
        )
    assert report["metrics"]["action_agreement"] == pytest.approx(float(expected))


def test_mismatched_networks_and_states_raise(teacher, student, eval_states):
    other = float_checkpoint(init_network(QNetworkArch(input_dim=6), 0).state_dict())
    with pytest.raises(ValueError, match="input/output dims"):
        validate_distillation(other, student, eval_states)
    with pytest.raises(ValueError, match="width"):
        validate_distillation(teacher, student, eval_states[:, :6])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_action_agreement", 1.5),
        ("max_kl_divergence", -1.0),
        ("min_cosine_similarity", 2.0),
        ("top_k_values", ()),
        ("rollout_episodes", -1),
        ("rollout_max_steps", 0),
        ("gate_cosine", "no"),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DistillationValidationConfig(**{field: value})


def test_recorded_actions_are_reported_next_to_the_teacher_agreement(teacher, student, eval_states):
    states = eval_states
    recorded = inference_forward(teacher)(torch.as_tensor(states)).argmax(1).numpy()
    recorded[:100] = (recorded[:100] + 1) % 4  # the agent explored on the first 100 states
    report = validate_distillation(
        teacher, student, states, DistillationValidationConfig(latency_repeats=2), actions=recorded
    )
    assert report["recorded_actions"]["teacher"] == pytest.approx(1 - 100 / len(states))
    assert 0 < report["recorded_actions"]["student"] <= 1 and report["recorded_actions"]["n_states"] == len(states)
    assert (
        validate_distillation(teacher, student, states, DistillationValidationConfig(latency_repeats=2))[
            "recorded_actions"
        ]
        is None
    )
    with pytest.raises(ValueError, match="outside the networks' 4 actions"):
        validate_distillation(
            teacher, student, states, DistillationValidationConfig(latency_repeats=2), actions=recorded + 4
        )
