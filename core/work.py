"""How much a stage will compute, estimated from its config and input sizes before it runs.

Two figures, because either can dominate on these networks:

- ``calls``: network calls (optimizer steps, evaluation chunks, timed
  forwards, throughput batches, rollout steps, calibration batches). On
  small networks a call's fixed overhead (tens of microseconds) is most of
  its cost, so ``batch_size: 1`` on a million states is expensive however
  small the network.
- ``multiply_adds``: rows times parameters for every forward (a training
  step counts three: forward and backward), plus the few dense solves of
  unit selection and matching. It dominates on wide networks and big batches.

Each figure is an upper-bound estimate within a small factor, not a
prediction of seconds; a service compares both with budgets before it
queues the work. ``detail`` says where the figure came from, for error messages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from core.arch import QNetworkArch
from core.configs import (
    EVAL_CHUNK_STATES,
    MAX_WEIGHT_MATCHING_ROUNDS,
    CrossoverConfig,
    DistillationValidationConfig,
    DistillConfig,
    FinetuneConfig,
    PTQConfig,
    QATConfig,
    QuantizationChoiceConfig,
    QuantizedValidationConfig,
    RecombinationValidationConfig,
    SearchConfig,
    TrainConfig,
    halving_plan,
    trials,
)
from core.mdp import ROLLOUT_CHUNK_VALUES

# A training step is a forward and a backward, about three forwards of arithmetic.
TRAINING_STEP_FORWARDS = 3
ROBUSTNESS_SLICES = 3


@dataclass(frozen=True)
class Work:
    """Network ``calls`` and ``multiply_adds`` of some computation; ``detail`` names its largest parts."""

    calls: int = 0
    multiply_adds: int = 0
    detail: str = ""

    def __add__(self, other: Work) -> Work:
        detail = "; ".join(part for part in (self.detail, other.detail) if part)
        return Work(self.calls + other.calls, self.multiply_adds + other.multiply_adds, detail)

    def described(self, detail: str) -> Work:
        return Work(self.calls, self.multiply_adds, detail)


def total(works: list[Work], detail: str) -> Work:
    """The sum of ``works``, described as a whole."""
    summed = Work()
    for work in works:
        summed = Work(summed.calls + work.calls, summed.multiply_adds + work.multiply_adds)
    return summed.described(detail)


def forward(arch: QNetworkArch, rows: int) -> Work:
    """One evaluation pass over ``rows`` states, in the validators' chunks."""
    return Work(math.ceil(rows / EVAL_CHUNK_STATES), rows * arch.param_count)


def repeated(arch: QNetworkArch, calls: int, rows_per_call: int) -> Work:
    """``calls`` forwards of ``rows_per_call`` rows each (timed repeats, throughput batches)."""
    return Work(calls, calls * rows_per_call * arch.param_count)


def training(arch: QNetworkArch, rows: int, config: TrainConfig) -> Work:
    """``core.training.train`` of ``arch`` on ``rows`` states: every epoch's steps and validation pass."""
    n_val = max(1, int(rows * config.val_fraction)) if config.val_fraction > 0 and rows > 1 else 0
    n_train = rows - n_val
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    arithmetic = TRAINING_STEP_FORWARDS * config.epochs * n_train * arch.param_count
    # The initial measurement covers every row; each epoch then evaluates the validation rows.
    evaluation = (rows + config.epochs * n_val) * arch.param_count
    detail = f"{config.epochs} epochs x {n_train} training rows in batches of {config.batch_size}"
    return Work(steps + 2 * (config.epochs + 1), arithmetic + evaluation, detail)


def distill(teacher: QNetworkArch, rows: int, config: DistillConfig, eval_rows: int = 0) -> Work:
    """Distillation on ``rows`` states, and the held-out comparison of teacher and student on ``eval_rows``."""
    student = config.student_arch(teacher)
    work = (
        forward(teacher, rows + eval_rows)
        + forward(student, eval_rows)
        + training(student, rows, config.train_config())
    )
    if config.init == "teacher":
        # Greedy unit selection, per hidden layer: per kept unit, a rank-one update of two width x width matrices.
        work += Work(
            0, sum(2 * kept * width**2 for kept, width in zip(student.hidden_sizes, teacher.hidden_sizes, strict=True))
        )
    return work.described(f"distill: {training(student, rows, config.train_config()).detail}")


def finetune(child: QNetworkArch, rows: int, config: FinetuneConfig) -> Work:
    teachers = (config.teacher_weight_a > 0) + (config.teacher_weight_a < 1)
    train_config = config.train_config()
    work = Work(teachers, teachers * rows * child.param_count) + training(child, rows, train_config)
    if config.export_int8:
        work += forward(child, rows)  # a static export calibrates on the states
    return work.described(f"fine-tune: {training(child, rows, train_config).detail}")


def qat(student: QNetworkArch, teacher: QNetworkArch, rows: int, config: QATConfig) -> Work:
    train_config = config.train_config()
    return (forward(teacher, rows) + training(student, rows, train_config)).described(
        f"QAT: {training(student, rows, train_config).detail}"
    )


def calibration(arch: QNetworkArch, rows: int, config: PTQConfig) -> Work:
    """Static PTQ reads at most ``calibration_batches`` batches of the states, one forward each."""
    used = min(rows, config.calibration_batches * config.calibration_batch_size)
    return Work(math.ceil(used / config.calibration_batch_size), used * arch.param_count)


def validate_quantized(
    arch: QNetworkArch, rows: int, config: QuantizedValidationConfig, teacher: QNetworkArch | None = None
) -> Work:
    models = 2 + (teacher is not None)
    timed_calls = config.latency_warmup + config.latency_repeats
    throughput_calls = (
        config.throughput_warmup_batches + config.throughput_timed_batches if config.throughput_batch_size else 0
    )
    throughput_rows = min(config.throughput_batch_size, rows)
    work = Work(models * forward(arch, rows).calls, models * rows * arch.param_count)
    work += repeated(arch, 2 * timed_calls, 1) + repeated(arch, 2 * throughput_calls, throughput_rows)
    return work.described(
        f"validate-quantized: {rows} states, 2 x {timed_calls} timed calls, 2 x {throughput_calls} throughput batches "
        f"of {throughput_rows}"
    )


def ptq(arch: QNetworkArch, calibration_rows: int, eval_rows: int, config: PTQConfig) -> Work:
    """PTQ as the ``ptq`` job runs it: quantize (static calibrates), then the default int8-vs-float validation."""
    work = calibration(arch, calibration_rows, config) if config.mode == "static" else Work()
    return (work + validate_quantized(arch, eval_rows, QuantizedValidationConfig())).described(
        f"ptq: {eval_rows} evaluation states"
    )


def choose_quantization(
    arch: QNetworkArch, teacher: QNetworkArch | None, rows: int, eval_rows: int, config: QuantizationChoiceConfig
) -> Work:
    """Every attempt ``core.qat.choose_quantization`` may make, each judged on a selection split of ``rows`` and on
    ``eval_rows`` states.

    With a teacher, QAT and its control (the same training without fake quantization) each train once.
    """
    attempts = 2 + 2 * (teacher is not None)
    judged = rows + eval_rows
    work = forward(arch, judged) + Work(attempts, attempts * judged * arch.param_count)
    work += calibration(arch, rows, config.ptq)
    if teacher is not None:
        work += forward(teacher, judged) + qat(arch, teacher, rows, config.qat) + qat(arch, teacher, rows, config.qat)
    return work.described(
        f"quantize: up to {attempts} attempts"
        + (f"; twice {qat(arch, teacher, rows, config.qat).detail}" if teacher else "")
    )


def validate_distillation(
    teacher: QNetworkArch, student: QNetworkArch, rows: int, config: DistillationValidationConfig
) -> Work:
    passes = 1 + (ROBUSTNESS_SLICES if config.robustness else 0)
    work = Work(0, 0)
    for arch in (teacher, student):
        work += Work(passes * forward(arch, rows).calls, passes * rows * arch.param_count)
        work += repeated(arch, config.latency_warmup + config.latency_repeats, 1)
    if config.rollout_episodes:
        state_dim = teacher.input_dim
        chunks = math.ceil(config.rollout_episodes / max(1, ROLLOUT_CHUNK_VALUES // state_dim**2))
        steps = config.rollout_max_steps
        for arch in (teacher, student):
            work += Work(chunks * steps, config.rollout_episodes * steps * (arch.param_count + state_dim**2))
        work += Work(config.rollout_episodes, config.rollout_episodes * state_dim)  # the seeded start states
    return work.described(
        f"validate-distillation: {rows} states x {passes} passes, {config.latency_warmup + config.latency_repeats} "
        "timed calls"
        + (
            f", {config.rollout_episodes} rollout episodes x {config.rollout_max_steps} steps"
            if config.rollout_episodes
            else ""
        )
    )


def validate_recombination(
    arch: QNetworkArch, rows: int, config: RecombinationValidationConfig = RecombinationValidationConfig()
) -> Work:
    return Work(3 * forward(arch, rows).calls, 3 * rows * arch.param_count, f"validate-recombination: {rows} states")


def crossover(arch: QNetworkArch, rows: int, config: CrossoverConfig) -> Work:
    """Blending is negligible; ``aligned`` evaluates both parents on the states and solves hidden² assignments."""
    if config.mode != "aligned":
        return Work(1, arch.param_count, f"crossover ({config.mode})")
    width = max(arch.hidden_sizes)
    assignment = sum(layer**3 for layer in arch.hidden_sizes)  # one Hungarian assignment per hidden layer
    work = Work(0, 0)
    if config.needs_states:
        # Hidden activations of A and B (and the child, to repair LayerNorm), and the correlations between units.
        work += Work(6, 6 * rows * arch.param_count + 2 * rows * width**2)
    if config.align_by == "weights":
        work += Work(
            MAX_WEIGHT_MATCHING_ROUNDS, MAX_WEIGHT_MATCHING_ROUNDS * (assignment + 2 * arch.param_count * width)
        )
    else:
        work += Work(1, assignment)
    return work.described(f"crossover (aligned by {config.align_by}) of {arch.describe()} on {rows} states")


def search(config: SearchConfig, arch: QNetworkArch, train_rows: int, eval_rows: int) -> Work:
    """Every trial of every rung, as if each rung ran all trials: an upper bound for halving, exact for a grid.

    Each trial is scored on the selection and the evaluation states (``eval_rows`` each).
    """
    specs = trials(config)
    works = [forward(arch, eval_rows) for _ in range(4)]  # the parent baselines, on both sets
    epochs = 0
    for rung in halving_plan(config, specs):
        for spec in specs:
            tuned = dataclasses.replace(spec.finetune, epochs=rung.epochs_for(spec))
            works += [
                crossover(arch, train_rows, spec.crossover),
                finetune(arch, train_rows, tuned),
                validate_recombination(arch, eval_rows),
                validate_recombination(arch, eval_rows),
            ]
            epochs += tuned.train_config().epochs
    return total(works, f"search: {len(specs)} trials, up to {epochs} fine-tune epochs on {train_rows} states")
