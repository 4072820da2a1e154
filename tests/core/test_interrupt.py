"""Every long loop in core calls its ``interrupt`` often, an exception from it stops the work, and core's work estimates bound what the loops do."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import work
from core.artifacts import Checkpoint, float_checkpoint
from core.crossover import CrossoverConfig, crossover
from core.distill import DistillConfig, distill
from core.evolve import EvolveConfig, evolve_states, run_evolution
from core.finetune import FinetuneConfig, finetune
from core.mdp import LinearMDP, greedy_returns, initial_states
from core.metrics import measure_latency, measure_throughput
from core.networks import QNetworkArch, init_network, student_arch
from core.qat import QATConfig, QuantizationChoiceConfig, choose_quantization, qat
from core.quantize import PTQConfig, inference_forward, quantize_static
from core.search import SearchConfig, run_search, search_states
from core.states import SyntheticStates, synthetic_states
from core.training import TrainConfig
from core.validate import (
    DistillationValidationConfig,
    QuantizedValidationConfig,
    validate_distillation,
    validate_quantized,
)

ARCH = QNetworkArch()


class Stop(Exception):
    pass


class CountingInterrupt:
    """Counts its calls; raises ``Stop`` on call number ``stop_at`` (never when None)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls = 0
        self.stop_at = stop_at

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.stop_at:
            raise Stop


@pytest.fixture(scope="module")
def teacher() -> Checkpoint:
    return float_checkpoint(init_network(ARCH, 0).state_dict())


@pytest.fixture(scope="module")
def other() -> Checkpoint:
    return float_checkpoint(init_network(ARCH, 1).state_dict())


@pytest.fixture(scope="module")
def states() -> np.ndarray:
    return synthetic_states(SyntheticStates(600, 3), 8)


def test_training_calls_interrupt_before_every_step_and_stops_at_once(teacher, states):
    config = DistillConfig(epochs=3, batch_size=32, init="random")
    counted = CountingInterrupt()
    distill(teacher, states, config, interrupt=counted)
    n_train = len(states) - int(len(states) * config.val_fraction)
    assert counted.calls == config.epochs * math.ceil(n_train / config.batch_size)

    epochs_seen = []
    with pytest.raises(Stop):
        distill(teacher, states, config, on_epoch=epochs_seen.append, interrupt=CountingInterrupt(stop_at=5))
    assert epochs_seen == []  # stopped on the fifth step, long before the end of the first epoch


def test_teacher_init_checks_between_units(teacher, states):
    counted = CountingInterrupt()
    distill(teacher, states, DistillConfig(epochs=1, batch_size=600, init="teacher"), interrupt=counted)
    assert (
        counted.calls == sum(student_arch(ARCH).hidden_sizes) + 1
    )  # a call per unit chosen in each hidden layer, then one training step
    with pytest.raises(Stop):
        distill(teacher, states, DistillConfig(epochs=1, init="teacher"), interrupt=CountingInterrupt(stop_at=3))


def test_finetune_qat_and_the_quantization_choice_reach_every_step(teacher, other, states):
    finetune_calls, qat_calls, choice_calls = CountingInterrupt(), CountingInterrupt(), CountingInterrupt()
    finetune(teacher, other, states, FinetuneConfig(epochs=2, batch_size=100), interrupt=finetune_calls)
    qat(teacher, other, states, QATConfig(epochs=2, batch_size=100), interrupt=qat_calls)
    steps = 2 * math.ceil((len(states) - 60) / 100)
    assert finetune_calls.calls == steps and qat_calls.calls == steps
    # One huge weight makes the per-tensor int8 grid too coarse for PTQ to keep the float model's
    # actions, so every method is tried: static calibrates in batches, then QAT and its control train.
    outlier = {**teacher.tensors, "network.0.weight": teacher.tensors["network.0.weight"].clone()}
    outlier["network.0.weight"][0, 0] = 1000.0
    coarse = float_checkpoint(outlier, teacher.arch)
    config = QuantizationChoiceConfig(
        min_agreement=1.0, ptq=PTQConfig(calibration_batch_size=50), qat=QATConfig(epochs=1, batch_size=100)
    )
    choice = choose_quantization(coarse, states, states, config, other, interrupt=choice_calls)
    assert [attempt.method for attempt in choice.attempts] == ["dynamic", "static", "qat", "retrained_ptq"]
    training_rows = choice.training_rows
    assert choice_calls.calls == math.ceil(training_rows / 50) + 2 * math.ceil(
        (training_rows - int(training_rows * 0.1)) / 100
    )


def test_static_calibration_checks_per_batch_and_keeps_the_ranges(teacher, states):
    config = PTQConfig(mode="static", calibration_batches=6, calibration_batch_size=100)
    counted = CountingInterrupt()
    batched = quantize_static(teacher, states, config, counted).checkpoint
    assert counted.calls == 6
    whole = quantize_static(
        teacher, states, PTQConfig(mode="static", calibration_batches=1, calibration_batch_size=600)
    ).checkpoint
    for key in ("network.0.input_scale", "network.4.input_scale", "network.8.input_zero_point"):
        assert torch.equal(
            batched.tensors[key], whole.tensors[key]
        )  # the min/max of the batches is the min/max of their union
    with pytest.raises(Stop):
        quantize_static(teacher, states, config, CountingInterrupt(stop_at=2))


def test_timed_loops_check_before_every_call():
    forward = inference_forward(float_checkpoint(init_network(ARCH, 0).state_dict()))
    sample = torch.zeros(1, 8)
    counted = CountingInterrupt()
    measure_latency(forward, sample, warmup=3, repeats=40, interrupt=counted)
    assert counted.calls == 43
    counted = CountingInterrupt()
    measure_throughput(forward, torch.zeros(64, 8), warmup_batches=2, timed_batches=7, interrupt=counted)
    assert counted.calls == 9
    with pytest.raises(Stop):
        measure_latency(forward, sample, warmup=0, repeats=10**6, interrupt=CountingInterrupt(stop_at=100))


def test_validators_stop_inside_repeats_and_rollouts(teacher, other, states):
    with pytest.raises(Stop):
        validate_quantized(
            teacher,
            _int8(teacher),
            states,
            QuantizedValidationConfig(latency_repeats=10**6),
            interrupt=CountingInterrupt(stop_at=500),
        )
    counted = CountingInterrupt()
    validate_distillation(
        teacher,
        other,
        states,
        DistillationValidationConfig(latency_warmup=0, latency_repeats=5, rollout_episodes=7, rollout_max_steps=30),
        interrupt=counted,
    )
    # 4 evaluation passes and 5 timed calls per model, 7 start states, 30 steps per model's rollout.
    assert counted.calls == 2 * (4 + 5) + 7 + 2 * 30


def test_rollouts_in_chunks_give_the_same_returns(monkeypatch):
    mdp = LinearMDP.from_seed(3, 8, 4)
    starts = initial_states(3, 50, 8)
    forward = inference_forward(float_checkpoint(init_network(ARCH, 0).state_dict()))
    whole = greedy_returns(forward, mdp, starts, 20)
    monkeypatch.setattr("core.mdp.ROLLOUT_CHUNK_VALUES", 7 * 64)  # chunks of 7 episodes
    counted = CountingInterrupt()
    chunked = greedy_returns(forward, mdp, starts, 20, counted)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)  # the same actions; batched kernels may round differently
    assert counted.calls == math.ceil(50 / 7) * 20


def test_weight_matching_and_search_check_per_round_and_trial(teacher, other, states):
    counted = CountingInterrupt()
    crossover(
        teacher, other, CrossoverConfig(mode="aligned", align_by="weights", repair_layernorm=False), interrupt=counted
    )
    assert counted.calls >= 2  # one call per round of matching; at least a second round confirms the fixed point
    config = SearchConfig(preset="minimal", max_runs=2)
    with pytest.raises(Stop):
        run_search(teacher, other, config, search_states(config, 8, 200), interrupt=CountingInterrupt(stop_at=3))


def test_evolution_checks_per_generation_and_inside_every_child(teacher, other):
    config = EvolveConfig(population_size=4, generations=2, elite=1, tournament_size=2, finetune_epochs=2, seed=3)
    founders = [teacher, other, *(float_checkpoint(init_network(ARCH, seed).state_dict()) for seed in (2, 3))]
    with pytest.raises(Stop):
        run_evolution(
            founders,
            config,
            evolve_states(config, 8, 200),
            targets=[teacher, other],
            interrupt=CountingInterrupt(stop_at=4),
        )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: TrainConfig(epochs=10**30),
            "epochs must be an integer in [1, 100000], got 1000000000000000000000000000000",
        ),
        (lambda: DistillConfig(batch_size=2_000_000), "batch_size must be an integer in [1, 1000000]"),
        (
            lambda: QuantizedValidationConfig(latency_repeats=10**9),
            "latency_repeats must be an integer in [1, 1000000]",
        ),
        (
            lambda: QuantizedValidationConfig(throughput_timed_batches=10**9),
            "throughput_timed_batches must be an integer in [1, 1000000]",
        ),
        (
            lambda: DistillationValidationConfig(rollout_episodes=10**9),
            "rollout_episodes must be an integer in [0, 100000]",
        ),
        (
            lambda: DistillationValidationConfig(rollout_max_steps=10**6),
            "rollout_max_steps must be an integer in [1, 100000]",
        ),
        (
            lambda: DistillationValidationConfig(top_k_values=tuple(range(1, 40))),
            "top_k_values must be 1 to 16 integers in [1, 4096]",
        ),
        (lambda: PTQConfig(calibration_batches=10**7), "calibration_batches must be an integer in [1, 1000000]"),
        (lambda: FinetuneConfig(epochs=200_000), "epochs must be an integer in [1, 100000]"),
        (lambda: SearchConfig(min_epochs=200_000), "min_epochs must be an integer in [1, 100000]"),
    ],
)
def test_every_size_and_repeat_has_an_upper_bound_named_in_the_error(build, message):
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_training_estimate_matches_the_steps_and_scales_with_width(teacher, states):
    config = DistillConfig(epochs=4, batch_size=50)
    counted = CountingInterrupt()
    distill(teacher, states, config, interrupt=counted)
    estimate = work.distill(ARCH, len(states), config)
    steps = counted.calls
    # Plus the teacher's pass and the evaluations (the initial one and one per epoch): a bound within a few calls.
    assert steps < estimate.calls <= steps + 1 + 2 * (config.epochs + 1)
    wide = work.distill(QNetworkArch(hidden_size=512), len(states), config)
    assert (
        wide.calls == estimate.calls and wide.multiply_adds > 30 * estimate.multiply_adds
    )  # a 256-wide student has 44x the parameters of a 32-wide one
    assert "4 epochs x 540 training rows in batches of 50" in estimate.detail


def test_hostile_requests_have_outsized_estimates():
    tiny_batches = work.distill(ARCH, 1_000_000, DistillConfig(batch_size=1))
    assert (
        10 * 900_000 < tiny_batches.calls < 10 * 900_000 + 100
    )  # one call per optimizer step, and a few evaluation passes
    rollouts = work.validate_distillation(
        ARCH,
        student_arch(ARCH),
        1000,
        DistillationValidationConfig(rollout_episodes=100_000, rollout_max_steps=100_000),
    )
    assert rollouts.multiply_adds > 10**13  # 10^10 episode steps through two networks
    repeats = work.validate_quantized(ARCH, 1000, QuantizedValidationConfig(latency_repeats=10**6))
    assert repeats.calls > 2 * 10**6
    halving = work.search(SearchConfig(preset="default", scheduler="halving"), student_arch(ARCH), 1000, 1000)
    grid = work.search(SearchConfig(preset="default"), student_arch(ARCH), 1000, 1000)
    assert grid.calls < halving.calls < 2 * grid.calls  # every rung counted as if all trials ran in it: an upper bound


def _int8(checkpoint: Checkpoint) -> Checkpoint:
    from core.quantize import quantize_dynamic

    return quantize_dynamic(checkpoint).checkpoint
