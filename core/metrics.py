"""Every metric any validator reports, defined once.

Inputs are raw Q-value tensors ("logits") of shape ``(n_states, n_actions)``;
``reference`` is the model compared against (teacher, float model, parent)
and ``query`` the model under test. All functions return Python floats.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from core.interrupt import Interrupt, checker

COSINE_EPS = 1e-8


def action_agreement(reference: torch.Tensor, query: torch.Tensor) -> float:
    """Fraction of states whose greedy actions are equal."""
    return float((reference.argmax(dim=1) == query.argmax(dim=1)).float().mean())


def top_k_agreement(reference: torch.Tensor, query: torch.Tensor, k: int) -> float:
    """Fraction of states whose reference greedy action is in the query's top-k (k clamped to the action count)."""
    k = max(1, min(int(k), query.shape[1]))
    top_k = query.topk(k, dim=1).indices
    return float((top_k == reference.argmax(dim=1, keepdim=True)).any(dim=1).float().mean())


def top_k_agreements(reference: torch.Tensor, query: torch.Tensor, k_values: Iterable[int]) -> dict[str, float]:
    """``{str(k): top_k_agreement}``, keyed by the clamped k."""
    n_actions = query.shape[1]
    return {str(max(1, min(int(k), n_actions))): top_k_agreement(reference, query, k) for k in k_values}


def kl_divergence(reference: torch.Tensor, query: torch.Tensor, temperature: float = 1.0) -> float:
    """``KL(softmax(ref/T) || softmax(qry/T))``: summed over actions, averaged over states."""
    log_p_ref = F.log_softmax(reference / temperature, dim=1)
    log_p_qry = F.log_softmax(query / temperature, dim=1)
    return float(F.kl_div(log_p_qry, log_p_ref, reduction="batchmean", log_target=True))


def mse(reference: torch.Tensor, query: torch.Tensor) -> float:
    return float(F.mse_loss(query, reference))


def mean_abs_error(reference: torch.Tensor, query: torch.Tensor) -> float:
    return float((query - reference).abs().mean())


def max_abs_error(reference: torch.Tensor, query: torch.Tensor) -> float:
    return float((query - reference).abs().max())


def mean_cosine_similarity(reference: torch.Tensor, query: torch.Tensor) -> float:
    """Per-state cosine between raw Q vectors (eps 1e-8), averaged."""
    return float(F.cosine_similarity(reference, query, dim=1, eps=COSINE_EPS).mean())


def prob_similarity(reference: torch.Tensor, query: torch.Tensor, temperature: float = 1.0) -> float:
    """``1 - mean |softmax(ref/T) - softmax(qry/T)|`` over states and actions."""
    difference = F.softmax(reference / temperature, dim=1) - F.softmax(query / temperature, dim=1)
    return float(1.0 - difference.abs().mean())


def oracle_agreement(child: torch.Tensor, parent_a: torch.Tensor, parent_b: torch.Tensor) -> float:
    """Fraction of states where the child's greedy action matches A's or B's."""
    child_action = child.argmax(dim=1)
    hits = (child_action == parent_a.argmax(dim=1)) | (child_action == parent_b.argmax(dim=1))
    return float(hits.float().mean())


def fidelity(reference: torch.Tensor, query: torch.Tensor, k_values: Iterable[int] = (1, 2, 3)) -> dict:
    """The standard comparison block shared by all validators."""
    return {
        "action_agreement": action_agreement(reference, query),
        "top_k_agreements": top_k_agreements(reference, query, k_values),
        "kl_divergence": kl_divergence(reference, query),
        "mse": mse(reference, query),
        "mae": mean_abs_error(reference, query),
        "max_abs_error": max_abs_error(reference, query),
        "mean_cosine_similarity": mean_cosine_similarity(reference, query),
        "n_states": int(reference.shape[0]),
    }


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    mean_ms: float
    p95_ms: float
    repeats: int
    warmup: int

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    forward: Callable[[torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    warmup: int = 5,
    repeats: int = 50,
    interrupt: Interrupt | None = None,
) -> LatencyStats:
    """Time ``repeats`` single calls of ``forward(sample)`` after ``warmup`` untimed ones.

    Uses ``perf_counter_ns`` per call under ``inference_mode``; ``interrupt``
    (``core.interrupt``) runs before every call, outside the timed span.
    Call it with one intra-op thread set, as workers run, for figures that compare.
    """
    check = checker(interrupt)
    timings_ns = []
    with torch.inference_mode():
        for _ in range(warmup):
            check()
            forward(sample)
        for _ in range(repeats):
            check()
            start = time.perf_counter_ns()
            forward(sample)
            timings_ns.append(time.perf_counter_ns() - start)
    timings_ms = np.asarray(timings_ns, dtype=np.float64) / 1e6
    return LatencyStats(
        median_ms=float(np.median(timings_ms)),
        mean_ms=float(timings_ms.mean()),
        p95_ms=float(np.percentile(timings_ms, 95)),
        repeats=repeats,
        warmup=warmup,
    )


@dataclass(frozen=True)
class Throughput:
    batch_size: int
    batches_per_sec: float
    states_per_sec: float
    timed_batches: int

    def to_dict(self) -> dict:
        return asdict(self)


def measure_throughput(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    warmup_batches: int = 2,
    timed_batches: int = 10,
    interrupt: Interrupt | None = None,
) -> Throughput:
    """Full-batch forwards per second (and states per second) over ``timed_batches`` calls; ``interrupt`` runs before
    each.
    """
    check = checker(interrupt)
    with torch.inference_mode():
        for _ in range(warmup_batches):
            check()
            forward(batch)
        start = time.perf_counter_ns()
        for _ in range(timed_batches):
            check()
            forward(batch)
        elapsed_s = max(time.perf_counter_ns() - start, 1) / 1e9
    batches_per_sec = timed_batches / elapsed_s
    return Throughput(int(batch.shape[0]), batches_per_sec, batches_per_sec * batch.shape[0], timed_batches)


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
