"""Quantization-aware training (weight-only int8) and the PTQ-then-QAT choice of the ``quantize`` job.

QAT fine-tunes a float student against a teacher's Q-values while every
forward sees its three Linear weights fake-quantized exactly as PTQ stores them
(``core.quantize``: symmetric, ``scale = max|W| / 127``, round half to even,
clamp to [-128, 127], per tensor or per channel)::

    W_hat = dequantize(quantize(W))      forward uses W + (W_hat - W).detach()

so gradients pass straight through to the float weights. Validation during
training uses the fake-quantized weights too, so its figures are those of the
int8 model. Converting stores the same int8 values PTQ would, which makes the
converted checkpoint compute what training validated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core import metrics
from core.artifacts import Checkpoint, float_checkpoint
from core.networks import network_from_state_dict
from core.quantize import Granularity, PTQConfig, dequantize_weight, inference_forward, quantize_dynamic, quantize_static, quantize_weight, weight_scale
from core.states import validate_states
from core.training import EpochMetrics, LossFn, TeacherTarget, TrainConfig, TrainResult, train


@dataclass(frozen=True)
class QATConfig:
    """QAT settings: the reference's QAT CLI defaults (5 epochs, batch 32, seed 42) except loss and lr.

    The reference trains QAT on MSE of raw Q-values at lr 1e-4. On a student
    distilled with the soft KL loss that pulls it toward the teacher's raw Q
    scale and costs agreement: on the baseline student its int8 model agreed
    with the teacher less (0.856) than plain dynamic PTQ (0.865). The soft
    KL loss at lr 1e-3 gives 0.869, so those are the defaults here.
    ``convert`` also returns the int8 checkpoint. ``temperature`` and
    ``alpha`` only matter for ``loss_fn="kl"`` (T is fixed, no decay).
    """

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 32
    loss_fn: LossFn = "kl"
    temperature: float = 3.0
    alpha: float = 1.0
    max_grad_norm: float | None = 1.0
    val_fraction: float = 0.1
    seed: int = 42
    granularity: Granularity = "per_tensor"
    convert: bool = True

    def __post_init__(self) -> None:
        if self.granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        if not isinstance(self.convert, bool):
            raise ValueError(f"convert must be a bool, got {self.convert!r}")
        self.train_config()  # the shared fields are validated, with their messages, by TrainConfig

    def train_config(self) -> TrainConfig:
        return TrainConfig.taken_from(self)


@dataclass(frozen=True)
class QATResult:
    """The fake-quant-trained float32 student, its int8 conversion (None without ``convert``) and the training record.

    ``training.history`` holds validation figures of the fake-quantized (int8) weights.
    """

    checkpoint: Checkpoint
    quantized: Checkpoint | None
    training: TrainResult
    float_param_bytes: int
    quantized_param_bytes: int | None
    elapsed_seconds: float


def fake_quantize_weight(weight: torch.Tensor, granularity: Granularity = "per_tensor") -> torch.Tensor:
    """``W + (dequantize(quantize(W)) - W).detach()``: int8 values forward, identity gradient. Shape and dtype of ``weight``."""
    detached = weight.detach()
    scale = weight_scale(detached, granularity)
    dequantized = dequantize_weight(quantize_weight(detached, scale), scale)
    return weight + (dequantized - weight).detach()


def qat(
    student: Checkpoint,
    teacher: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: QATConfig = QATConfig(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> QATResult:
    """Fine-tune the float ``student`` toward ``teacher`` on ``states`` with fake-quantized weights.

    ``states`` is ``(n_states, input_dim)`` float; the teacher's Q-values on
    them are the targets (the distillation loss of ``core.training``). Raises
    ``ValueError`` for an int8 student (QAT needs the float weights) or when
    the networks' input/output dims differ.
    """
    if student.format != "float32":
        raise ValueError(
            f"QAT needs a float32 student, got a {student.format} checkpoint: "
            "train the float checkpoint the int8 one was made from"
        )
    if (teacher.arch.input_dim, teacher.arch.output_dim) != (student.arch.input_dim, student.arch.output_dim):
        raise ValueError(f"teacher {teacher.arch.describe()} and student {student.arch.describe()} differ in input or output dims")
    started = time.perf_counter()
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), student.arch.input_dim))
    with torch.no_grad():
        teacher_logits = inference_forward(teacher)(state_tensor)
    model = network_from_state_dict(student.tensors, student.arch)
    training = train(
        model,
        state_tensor,
        [TeacherTarget(teacher_logits)],
        config.train_config(),
        weight_transform=lambda key, weight: fake_quantize_weight(weight, config.granularity),
        on_epoch=on_epoch,
    )
    trained = float_checkpoint(training.state_dict, student.arch)
    quantized = None
    if config.convert:
        converted = quantize_dynamic(trained, PTQConfig(granularity=config.granularity)).checkpoint
        quantized = dataclasses.replace(converted, quantization={**converted.quantization, "mode": "qat"})
    return QATResult(
        checkpoint=trained,
        quantized=quantized,
        training=training,
        float_param_bytes=trained.param_bytes,
        quantized_param_bytes=quantized.param_bytes if quantized is not None else None,
        elapsed_seconds=time.perf_counter() - started,
    )


QuantizationMethod = Literal["dynamic", "static", "qat"]


@dataclass(frozen=True)
class QuantizationChoiceConfig:
    """Settings of ``choose_quantization``: the agreement an int8 model must keep, and each method's settings."""

    min_agreement: float = 0.99
    ptq: PTQConfig = PTQConfig()
    qat: QATConfig = QATConfig()

    def __post_init__(self) -> None:
        if isinstance(self.min_agreement, bool) or not isinstance(self.min_agreement, (int, float)) or not 0 <= self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement!r}")


@dataclass(frozen=True)
class QuantizationAttempt:
    """One method tried: its int8 checkpoint (None if skipped), figures on the held-out states, and the verdict."""

    method: QuantizationMethod
    checkpoint: Checkpoint | None
    agreement: float | None
    fidelity: dict | None
    teacher_agreement: float | None
    kept: bool
    reason: str
    elapsed_seconds: float


@dataclass(frozen=True)
class QuantizationChoice:
    """Every attempt in the order tried; ``chosen`` is the kept one."""

    attempts: list[QuantizationAttempt]

    @property
    def chosen(self) -> QuantizationAttempt:
        return next(attempt for attempt in self.attempts if attempt.kept)


def choose_quantization(
    checkpoint: Checkpoint,
    states: torch.Tensor | np.ndarray,
    eval_states: torch.Tensor | np.ndarray,
    config: QuantizationChoiceConfig = QuantizationChoiceConfig(),
    teacher: Checkpoint | None = None,
) -> QuantizationChoice:
    """Try dynamic PTQ, static PTQ, then QAT; stop at the first whose top-1 agreement with the float model reaches ``min_agreement``.

    ``states`` calibrate static PTQ and train QAT; ``eval_states`` (held out
    from them) judge every attempt by top-1 agreement of the int8 model with
    the float ``checkpoint``. QAT runs only with a ``teacher``. If none
    reaches the bar, the attempt with the best agreement is kept (the earliest
    on ties). Pure: the caller stores the checkpoints.
    """
    if checkpoint.format != "float32":
        raise ValueError(f"choose_quantization needs a float32 checkpoint, got {checkpoint.format}")
    eval_tensor = torch.from_numpy(validate_states(np.asarray(eval_states), checkpoint.arch.input_dim))
    with torch.no_grad():
        float_q = inference_forward(checkpoint)(eval_tensor)
        teacher_q = inference_forward(teacher)(eval_tensor) if teacher is not None else None
    ptq_config = dataclasses.replace(config.ptq, mode="dynamic")
    methods: list[tuple[QuantizationMethod, Callable[[], Checkpoint]]] = [
        ("dynamic", lambda: quantize_dynamic(checkpoint, ptq_config).checkpoint),
        ("static", lambda: quantize_static(checkpoint, states, dataclasses.replace(ptq_config, mode="static")).checkpoint),
        ("qat", lambda: qat(checkpoint, teacher, states, dataclasses.replace(config.qat, convert=True)).quantized),
    ]
    attempts: list[QuantizationAttempt] = []
    for method, build in methods:
        if method == "qat" and teacher is None:
            attempts.append(QuantizationAttempt(method, None, None, None, None, False, "skipped: QAT needs a teacher", 0.0))
            continue
        started = time.perf_counter()
        quantized = build()
        with torch.no_grad():
            quant_q = inference_forward(quantized)(eval_tensor)
        fidelity = metrics.fidelity(float_q, quant_q)
        teacher_agreement = metrics.action_agreement(teacher_q, quant_q) if teacher_q is not None else None
        attempts.append(
            QuantizationAttempt(method, quantized, fidelity["action_agreement"], fidelity, teacher_agreement, False, "", time.perf_counter() - started)
        )
        if fidelity["action_agreement"] >= config.min_agreement:
            break
    return QuantizationChoice(_verdicts(attempts, config.min_agreement))


def _verdicts(attempts: list[QuantizationAttempt], min_agreement: float) -> list[QuantizationAttempt]:
    """Mark the kept attempt: the last one tried if it met the bar, else the best (earliest on ties)."""
    tried = [attempt for attempt in attempts if attempt.agreement is not None]
    best = max(tried, key=lambda attempt: attempt.agreement)
    judged = []
    for attempt in attempts:
        if attempt is best:
            verdict = f">= {min_agreement}" if attempt.agreement >= min_agreement else f"< {min_agreement}, but the best of all methods"
            judged.append(dataclasses.replace(attempt, kept=True, reason=f"kept: agreement {attempt.agreement:.4f} {verdict}"))
        elif attempt.agreement is not None:
            # Trying stops at the first method that meets the bar, so every other one fell short.
            judged.append(dataclasses.replace(attempt, reason=f"rejected: agreement {attempt.agreement:.4f} < {min_agreement}"))
        else:
            judged.append(attempt)
    return judged
