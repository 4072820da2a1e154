import math

import pytest
import torch

from core import metrics


@pytest.fixture
def reference():
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 3.0], [1.0, 2.0, 3.0]])


def test_agreement_and_top_k(reference):
    query = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0], [3.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    assert metrics.action_agreement(reference, query) == 0.5
    assert metrics.top_k_agreement(reference, query, 2) == 1.0
    assert metrics.top_k_agreements(reference, query, [1, 2, 9]) == {"1": 0.5, "2": 1.0, "3": 1.0}


def test_kl_matches_a_hand_computation():
    reference = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    query = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert metrics.kl_divergence(reference, query) == pytest.approx(expected, rel=1e-6)
    assert metrics.kl_divergence(reference, reference) == pytest.approx(0.0, abs=1e-7)


def test_error_metrics(reference):
    query = reference + torch.tensor([1.0, -1.0, 0.0])
    assert metrics.mse(reference, query) == pytest.approx(2 / 3)
    assert metrics.mean_abs_error(reference, query) == pytest.approx(2 / 3)
    assert metrics.max_abs_error(reference, query) == 1.0
    assert metrics.mean_cosine_similarity(reference, 2 * reference) == pytest.approx(1.0)
    assert metrics.prob_similarity(reference, reference, temperature=3.0) == pytest.approx(1.0)


def test_oracle_agreement_counts_either_parent():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    child = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert metrics.oracle_agreement(child, a, b) == pytest.approx(2 / 3)


def test_latency_and_throughput_report_their_settings():
    forward = torch.nn.Linear(8, 4)
    stats = metrics.measure_latency(forward, torch.zeros(1, 8), warmup=2, repeats=7)
    assert (stats.repeats, stats.warmup) == (7, 2)
    assert 0 < stats.median_ms <= stats.p95_ms
    throughput = metrics.measure_throughput(forward, torch.zeros(16, 8), warmup_batches=1, timed_batches=3)
    assert throughput.batch_size == 16 and throughput.timed_batches == 3
    assert throughput.states_per_sec == pytest.approx(throughput.batches_per_sec * 16)
    assert metrics.rss_bytes() > 0 and metrics.peak_rss_bytes() >= metrics.rss_bytes() // 2
