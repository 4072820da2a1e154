"""Fine-tuning: train a crossover child back toward its parents.

The child is distilled from parent A (the reference's only target) or, with
``teacher_weight_a < 1`` and a parent B, from both:
``w * KL(A || child) + (1 - w) * KL(B || child)`` (each T²-scaled). The
training itself is ``core.training.train``; this module only chooses its
settings, builds the targets and packages the result.

Named regimes (the reference's search regimes; all seed 42, KL loss, 10 %
validation, no early stopping):

    short      5 epochs  lr 1e-3  batch 32
    medium    10 epochs  lr 5e-4  batch 32
    long      20 epochs  lr 1e-4  batch 32
    lr_high    5 epochs  lr 5e-3  batch 32
    short_qat  5 epochs  lr 1e-4  batch 16  quantization_applied ptq_dynamic
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    DEFAULT_REGIME,
    DUAL_TEACHER_TEMPERATURE,
    REGIMES,
    SINGLE_TEACHER_TEMPERATURE,
    FinetuneConfig,
    QuantizationApplied,
    Regime,
    RegimeName,
)
from core.interrupt import Interrupt
from core.qat import fake_quantize_weight
from core.quantize import PTQConfig, QuantizationMode, dequantize, inference_forward, quantize
from core.threads import single_threaded
from core.training import EpochMetrics, TeacherTarget, train, training_split

BALANCE_LOG_SCALE_RANGE = 4.0
BALANCE_STEPS = 30


@dataclass(frozen=True)
class FinetuneResult:
    """The tuned child and its training record.

    ``child`` is the float32 checkpoint of the best epoch (lowest validation
    loss); ``child_int8`` its int8 export when ``config.export_int8``.
    ``before`` and ``after`` are the loop's measurements of the untuned child
    and of the kept epoch on the validation split: loss, action agreement and
    probability similarity against parent A (against B when
    ``teacher_weight_a`` is 0). ``history`` has one entry per epoch trained.
    """

    child: Checkpoint
    child_int8: Checkpoint | None
    config: FinetuneConfig
    before: EpochMetrics | None
    after: EpochMetrics | None
    history: list[EpochMetrics]
    best_epoch: int
    early_stopped: bool
    teacher_b_logit_scale: float
    elapsed_seconds: float


@single_threaded
def finetune(
    child: Checkpoint,
    reference_a: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: FinetuneConfig = FinetuneConfig(regime="medium"),
    reference_b: Checkpoint | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> FinetuneResult:
    """Fine-tune ``child`` toward A (and B when ``config.teacher_weight_a < 1``).

    ``states`` is ``(n_states, input_dim)`` float32; the loop holds out
    ``config.val_fraction`` of them (a static int8 export calibrates on all of
    them). Any of the three checkpoints may be int8 (its weights are
    dequantized). ``interrupt`` (``core.interrupt``) is called at every
    training step. Raises ``ValueError`` for mismatched architectures, a dual
    loss without ``reference_b``, or mis-shaped states.
    """
    for name, reference in (("reference_a", reference_a), ("reference_b", reference_b)):
        if reference is not None and (reference.arch.input_dim, reference.arch.output_dim) != (
            child.arch.input_dim,
            child.arch.output_dim,
        ):
            raise ValueError(
                f"{name} is {reference.arch.describe()} but the child is {child.arch.describe()}: input/output dims "
                "differ"
            )
    if config.teacher_weight_a < 1.0 and reference_b is None:
        raise ValueError(f"teacher_weight_a {config.teacher_weight_a} needs reference_b, got None")
    state_tensor = _as_states(states, child.arch.input_dim)
    train_config = config.train_config()
    weight_a = config.teacher_weight_a
    logits_a = _q_values(reference_a, state_tensor) if weight_a > 0.0 else None
    logits_b = _q_values(reference_b, state_tensor) if weight_a < 1.0 and reference_b is not None else None
    scale_b = 1.0
    if logits_a is not None and logits_b is not None and config.balance_teachers:
        rows = training_split(state_tensor.shape[0], train_config).train
        scale_b = balance_scale(logits_a[rows], logits_b[rows], weight_a, train_config.temperature)
    targets = []
    if logits_a is not None:
        targets.append(TeacherTarget(logits_a, weight=weight_a))
    if logits_b is not None:
        targets.append(TeacherTarget(logits_b * scale_b, weight=1.0 - weight_a))
    weight_transform = _fake_quantize if config.quantization_applied != "none" else None
    result = train(
        child.arch,
        dequantize(child),
        state_tensor,
        targets,
        train_config,
        dropout_rate=config.dropout_rate,
        weight_transform=weight_transform,
        on_epoch=on_epoch,
        interrupt=interrupt,
    )
    target = "a" if weight_a == 1.0 else "b" if weight_a == 0.0 else "both"
    metadata = {"stage": "finetune", "target": target, "teacher_weight_a": weight_a, "teacher_b_logit_scale": scale_b}
    tuned = float_checkpoint(result.state_dict, arch=child.arch, metadata=metadata, source_format=child.source_format)
    tuned_int8 = None
    if config.export_int8:
        mode: QuantizationMode = "static" if config.quantization_applied == "ptq_static" else "dynamic"
        tuned_int8 = quantize(
            tuned, PTQConfig(mode=mode), calibration_states=state_tensor, interrupt=interrupt
        ).checkpoint
    after = result.history[result.best_epoch - 1] if result.best_epoch > 0 else result.initial
    return FinetuneResult(
        child=tuned,
        child_int8=tuned_int8,
        config=config,
        before=result.initial,
        after=after,
        history=result.history,
        best_epoch=result.best_epoch,
        early_stopped=result.early_stopped,
        teacher_b_logit_scale=scale_b,
        elapsed_seconds=result.elapsed_seconds,
    )


def balance_scale(logits_a: torch.Tensor, logits_b: torch.Tensor, weight_a: float, temperature: float) -> float:
    """The factor for B's Q-values that makes the two-teacher target split the parents' disagreements by weight.

    The dual-teacher target is ``w softmax(a / T) + (1 - w) softmax(s b / T)``;
    on a state where A and B prefer different actions, its greedy action is
    usually the more confident parent's. When one parent's Q-values are
    spread wider it wins most of those states, and the child agrees with it
    far more than with the other: on students of teachers 0 and 1 the child
    agreed 0.68 with B and 0.48 with A. ``s`` is chosen (bisection on log s
    over [-4, 4]) so that the target takes A's action on a share ``w`` of
    those states and B's on the rest, which is what maximises
    ``min(agreement with A, with B)`` at equal weights. Far from equal weights
    the share may be out of reach of any scale; the nearest end of the range
    is returned. ``logits_*`` are ``(n, n_actions)`` on the training rows;
    1.0 when the parents never disagree.
    """
    disagree = logits_a.argmax(1) != logits_b.argmax(1)
    if not bool(disagree.any()):
        return 1.0
    action_a, action_b = logits_a[disagree].argmax(1), logits_b[disagree].argmax(1)
    probs_a = weight_a * torch.softmax(logits_a[disagree] / temperature, 1)
    scaled_b = logits_b[disagree] / temperature

    def share_a(log_scale: float) -> float:
        greedy = (probs_a + (1.0 - weight_a) * torch.softmax(scaled_b * math.exp(log_scale), 1)).argmax(1)
        taken_a, taken_b = float((greedy == action_a).sum()), float((greedy == action_b).sum())
        return taken_a / max(taken_a + taken_b, 1.0)

    low, high = -BALANCE_LOG_SCALE_RANGE, BALANCE_LOG_SCALE_RANGE
    for _ in range(BALANCE_STEPS):
        middle = (low + high) / 2
        # A larger scale sharpens B, so A's share falls as log_scale grows.
        if share_a(middle) > weight_a:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


def _fake_quantize(key: str, weight: torch.Tensor) -> torch.Tensor:
    """Per-tensor int8 fake quantization, the grid of the dynamic and static exports."""
    return fake_quantize_weight(weight)


def _q_values(checkpoint: Checkpoint, states: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return inference_forward(checkpoint)(states).contiguous()


def _as_states(states: torch.Tensor | np.ndarray, input_dim: int) -> torch.Tensor:
    tensor = torch.as_tensor(states, dtype=torch.float32).contiguous()
    if tensor.dim() != 2 or tensor.shape[1] != input_dim or tensor.shape[0] < 2:
        raise ValueError(f"states must have shape (n_states >= 2, {input_dim}), got {list(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("states must be finite")
    return tensor
