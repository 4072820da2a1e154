"""validate_recombination: comparisons, the bound two parents allow, gates relative to it, int8 roles.

That the default gate passes good children and fails a crossover child nobody fine-tuned is tested on real students in test_recombination_quality.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core import metrics
from core.artifacts import Checkpoint, float_checkpoint
from core.networks import QNetworkArch, functional_forward, init_network
from core.quantize import quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from core.validate import RecombinationValidationConfig, recombination_bound, validate_recombination

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


def test_a_copy_of_a_keeps_a_but_not_what_both_parents_allow(parent_a, parent_b, states):
    """Judged toward both parents, parent A itself keeps AB / ((1 + AB) / 2) of the bound and fails; toward A it passes."""
    report = validate_recombination(parent_a, parent_a, parent_b, states)
    assert report["kind"] == "validate-recombination" and report["schema_version"] == "1.0"
    versus_a = report["comparisons"]["child_vs_parent_a"]
    assert versus_a["action_agreement"] == 1.0 and versus_a["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert versus_a["top_k_agreements"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    q_a = functional_forward(parent_a.arch, parent_a.tensors, states)
    q_b = functional_forward(parent_b.arch, parent_b.tensors, states)
    parents_agreement = metrics.action_agreement(q_a, q_b)
    bound = (1 + parents_agreement) / 2
    assert report["summary"] == {
        "child_agrees_with_parent_a": 1.0,
        "child_agrees_with_parent_b": pytest.approx(parents_agreement),
        "oracle_agreement": 1.0,
        "primary_metric": pytest.approx(parents_agreement),
        "parents_agreement": pytest.approx(parents_agreement),
        "target": "both",
        "target_agreement": pytest.approx(parents_agreement),
        "bound": pytest.approx(bound),
        "bound_fraction": pytest.approx(parents_agreement / bound),
    }
    assert report["passed"] is False and report["failed_checks"] == ["bound_fraction"]
    toward_a = validate_recombination(parent_a, parent_a, parent_b, states, RecombinationValidationConfig(target="a"))
    assert (
        toward_a["passed"] is True
        and toward_a["summary"]["bound"] == 1.0
        and toward_a["summary"]["bound_fraction"] == 1.0
    )
    assert "oracle_agreement" not in toward_a["checks"]


def test_the_target_comes_from_the_child_when_not_given(parent_a, parent_b, states):
    tuned_toward_b = dataclasses.replace(parent_b, metadata={"target": "b"})
    report = validate_recombination(tuned_toward_b, parent_a, parent_b, states)
    assert report["summary"]["target"] == "b" and report["passed"] is True
    assert (
        validate_recombination(
            tuned_toward_b, parent_a, parent_b, states, RecombinationValidationConfig(target="both")
        )["passed"]
        is False
    )


def test_reference_checks_are_reported_and_gate_only_when_asked(parent_a, parent_b, states):
    report = validate_recombination(parent_a, parent_a, parent_b, states, RecombinationValidationConfig(target="a"))
    check = report["checks"]["child_vs_parent_b.action_agreement"]
    assert check["threshold"] == 0.70 and check["passed"] is False and check["gates"] is False
    assert set(report["checks"]) == {
        *(
            f"child_vs_parent_{side}.{metric}"
            for side in "ab"
            for metric in ("action_agreement", "kl_divergence", "mse", "mean_cosine_similarity")
        ),
        "bound_fraction",
    }
    gated = validate_recombination(
        parent_a, parent_a, parent_b, states, RecombinationValidationConfig(target="a", gate_reference_checks=True)
    )
    assert gated["passed"] is False and "child_vs_parent_b.action_agreement" in gated["failed_checks"]
    lenient = RecombinationValidationConfig(
        gate_reference_checks=True,
        min_bound_fraction=0.0,
        min_oracle_agreement=0.0,
        min_action_agreement=0.0,
        max_kl_divergence=100.0,
        max_mse=100.0,
        min_cosine_similarity=-1.0,
    )
    assert validate_recombination(parent_a, parent_a, parent_b, states, lenient)["passed"] is True


def test_report_only_passes_but_still_lists_failures(parent_a, parent_b, states):
    report = validate_recombination(
        parent_a, parent_a, parent_b, states, RecombinationValidationConfig(report_only=True)
    )
    assert report["passed"] is True and report["failed_checks"] == ["bound_fraction"]


def test_parents_agreement_and_oracle(parent_a, parent_b, states):
    child = parent(2)
    report = validate_recombination(child, parent_a, parent_b, states)
    baseline = report["comparisons"]["parent_a_vs_parent_b"]
    q_a, q_b = (
        functional_forward(parent_a.arch, parent_a.tensors, states),
        functional_forward(parent_b.arch, parent_b.tensors, states),
    )
    assert (
        baseline["action_agreement"] == pytest.approx(metrics.action_agreement(q_a, q_b)) and baseline["passed"] is None
    )
    summary = report["summary"]
    assert summary["parents_agreement"] == baseline["action_agreement"]
    assert summary["primary_metric"] == min(
        summary["child_agrees_with_parent_a"], summary["child_agrees_with_parent_b"]
    )
    assert summary["oracle_agreement"] >= max(
        summary["child_agrees_with_parent_a"], summary["child_agrees_with_parent_b"]
    )
    assert summary["bound_fraction"] < 0.85 and report["checks"]["oracle_agreement"]["passed"] is False
    assert not any(name.startswith("parent_a_vs_parent_b") for name in report["checks"])


def test_the_bound_is_what_two_parents_allow():
    assert recombination_bound(0.2, "both") == pytest.approx(0.6)
    assert recombination_bound(1.0, "both") == 1.0
    assert recombination_bound(0.2, "a") == recombination_bound(0.2, "b") == 1.0


def test_any_role_may_be_int8(parent_a, parent_b, states):
    child_int8 = quantize_dynamic(parent_a).checkpoint
    report = validate_recombination(child_int8, parent_a, quantize_dynamic(parent_b).checkpoint, states)
    assert report["model_formats"] == {"parent_a": "float32", "parent_b": "int8", "child": "int8"}
    assert report["comparisons"]["child_vs_parent_a"]["action_agreement"] > 0.95


def test_mismatched_architecture_is_refused(parent_a, parent_b, states):
    wide = float_checkpoint(init_network(QNetworkArch(hidden_size=64), 0).state_dict())
    with pytest.raises(
        ValueError, match="parent_b is 8-64-64-4 layernorm relu but the child is 8-32-32-4 layernorm relu"
    ):
        validate_recombination(parent_a, parent_a, wide, states)


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_action_agreement", 1.5), ("min_bound_fraction", -0.1), ("min_oracle_agreement", 2.0), ("target", "c")],
)
def test_config_rejects_bad_thresholds(field, value):
    with pytest.raises(ValueError, match=f"{field} must be"):
        RecombinationValidationConfig(**{field: value})
