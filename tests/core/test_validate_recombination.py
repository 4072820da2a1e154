"""validate_recombination: comparisons, thresholds, failed checks, int8 roles."""

from __future__ import annotations

import pytest
import torch

from core import metrics
from core.artifacts import Checkpoint, float_checkpoint
from core.networks import QNetworkArch, functional_forward, init_network
from core.quantize import quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.validate import RecombinationValidationConfig, validate_recombination

ARCH = QNetworkArch(input_dim=8, hidden_size=32, output_dim=4)


def parent(seed: int) -> Checkpoint:
    return float_checkpoint(init_network(ARCH, seed).state_dict(), ARCH)


@pytest.fixture(scope="module")
def parent_a() -> Checkpoint:
    return parent(0)


@pytest.fixture(scope="module")
def parent_b() -> Checkpoint:
    return parent(1)


@pytest.fixture(scope="module")
def states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states=1000, seed=7), 8))


def test_a_copy_of_a_passes_against_a_and_fails_against_b(parent_a, parent_b, states):
    report = validate_recombination(parent_a, parent_a, parent_b, states)
    assert report["kind"] == "validate-recombination" and report["schema_version"] == "1.0"
    versus_a = report["comparisons"]["child_vs_parent_a"]
    assert versus_a["action_agreement"] == 1.0 and versus_a["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert versus_a["passed"] is True and versus_a["top_k_agreements"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    q_a = functional_forward(parent_a.tensors, states)
    q_b = functional_forward(parent_b.tensors, states)
    expected_b = metrics.action_agreement(q_b, q_a)
    assert expected_b < 0.7
    assert report["comparisons"]["child_vs_parent_b"]["action_agreement"] == pytest.approx(expected_b)
    assert report["passed"] is False
    assert "child_vs_parent_b.action_agreement" in report["failed_checks"]
    assert not any(name.startswith("child_vs_parent_a.") for name in report["failed_checks"])
    assert report["summary"] == {
        "child_agrees_with_parent_a": 1.0,
        "child_agrees_with_parent_b": pytest.approx(expected_b),
        "oracle_agreement": 1.0,
        "primary_metric": pytest.approx(expected_b),
        "parent_baseline_agreement": None,
    }


def test_each_threshold_is_applied_and_overridable(parent_a, parent_b, states):
    report = validate_recombination(parent_a, parent_a, parent_b, states)
    check = report["checks"]["child_vs_parent_b.mse"]
    assert check["threshold"] == 5.0 and check["passed"] == (check["value"] <= 5.0)
    assert set(report["checks"]) == {
        f"child_vs_parent_{side}.{metric}" for side in "ab" for metric in ("action_agreement", "kl_divergence", "mse", "mean_cosine_similarity")
    }
    lenient = RecombinationValidationConfig(min_action_agreement=0.0, max_kl_divergence=100.0, max_mse=100.0, min_cosine_similarity=-1.0)
    assert validate_recombination(parent_a, parent_a, parent_b, states, lenient)["passed"] is True
    strict = RecombinationValidationConfig(min_action_agreement=1.0, max_kl_divergence=0.0, max_mse=0.0, min_cosine_similarity=1.0)
    tight = validate_recombination(parent_a, parent_a, parent_b, states, strict)
    assert "child_vs_parent_b.mean_cosine_similarity" in tight["failed_checks"]


def test_report_only_passes_but_still_lists_failures(parent_a, parent_b, states):
    report = validate_recombination(parent_a, parent_a, parent_b, states, RecombinationValidationConfig(report_only=True))
    assert report["passed"] is True and "child_vs_parent_b.action_agreement" in report["failed_checks"]


def test_parent_baseline_and_oracle(parent_a, parent_b, states):
    child = parent(2)
    report = validate_recombination(child, parent_a, parent_b, states, RecombinationValidationConfig(include_parent_baseline=True))
    baseline = report["comparisons"]["parent_a_vs_parent_b"]
    q_a, q_b = functional_forward(parent_a.tensors, states), functional_forward(parent_b.tensors, states)
    assert baseline["action_agreement"] == pytest.approx(metrics.action_agreement(q_a, q_b)) and baseline["passed"] is None
    summary = report["summary"]
    assert summary["parent_baseline_agreement"] == baseline["action_agreement"]
    assert summary["primary_metric"] == min(summary["child_agrees_with_parent_a"], summary["child_agrees_with_parent_b"])
    assert summary["oracle_agreement"] >= max(summary["child_agrees_with_parent_a"], summary["child_agrees_with_parent_b"])
    assert not any(name.startswith("parent_a_vs_parent_b") for name in report["checks"])


def test_any_role_may_be_int8(parent_a, parent_b, states):
    child_int8 = quantize_dynamic(parent_a).checkpoint
    report = validate_recombination(child_int8, parent_a, quantize_dynamic(parent_b).checkpoint, states)
    assert report["model_formats"] == {"parent_a": "float32", "parent_b": "int8", "child": "int8"}
    assert report["comparisons"]["child_vs_parent_a"]["action_agreement"] > 0.95


def test_mismatched_architecture_is_refused(parent_a, parent_b, states):
    wide = float_checkpoint(init_network(QNetworkArch(hidden_size=64), 0).state_dict())
    with pytest.raises(ValueError, match="parent_b is 8-64-64-4 but the child is 8-32-32-4"):
        validate_recombination(parent_a, parent_a, wide, states)


def test_config_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="min_action_agreement must be in \\[0, 1\\], got 1.5"):
        RecombinationValidationConfig(min_action_agreement=1.5)
