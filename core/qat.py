"""Quantization-aware training (weight-only int8) and the PTQ-then-QAT choice of the ``quantize`` job.

QAT fine-tunes a float student against a teacher's Q-values while every
forward sees its Linear weights fake-quantized exactly as PTQ stores them
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
from typing import Any, Literal

import numpy as np
import torch

from core import metrics
from core.artifacts import Checkpoint, float_checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    QATConfig,
    QuantizationChoiceConfig,
)
from core.interrupt import Interrupt
from core.quantize import (
    Granularity,
    PTQConfig,
    dequantize_weight,
    inference_forward,
    quantize_dynamic,
    quantize_static,
    quantize_weight,
    weight_scale,
)
from core.states import derive_seed, validate_states
from core.threads import single_threaded
from core.training import EpochMetrics, TeacherTarget, TrainResult, train, train_val_split


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
    """``W + (dequantize(quantize(W)) - W).detach()``: int8 values forward, identity gradient. Shape and dtype of
    ``weight``.
    """
    detached = weight.detach()
    scale = weight_scale(detached, granularity)
    dequantized = dequantize_weight(quantize_weight(detached, scale), scale)
    return weight + (dequantized - weight).detach()


@single_threaded
def qat(
    student: Checkpoint,
    teacher: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: QATConfig = QATConfig(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> QATResult:
    """Fine-tune the float ``student`` toward ``teacher`` on ``states`` with fake-quantized weights.

    ``states`` is ``(n_states, input_dim)`` float; the teacher's Q-values on
    them are the targets (the distillation loss of ``core.training``);
    ``interrupt`` (``core.interrupt``) is called at every step. Raises
    ``ValueError`` for an int8 student (QAT needs the float weights) or when
    the networks' input/output dims differ.
    """
    if student.format != "float32":
        raise ValueError(
            f"QAT needs a float32 student, got a {student.format} checkpoint: "
            "train the float checkpoint the int8 one was made from"
        )
    if (teacher.arch.input_dim, teacher.arch.output_dim) != (student.arch.input_dim, student.arch.output_dim):
        raise ValueError(
            f"teacher {teacher.arch.describe()} and student {student.arch.describe()} differ in input or output dims"
        )
    started = time.perf_counter()
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), student.arch.input_dim))
    with torch.no_grad():
        teacher_logits = inference_forward(teacher)(state_tensor)
    training = train(
        student.arch,
        student.tensors,
        state_tensor,
        [TeacherTarget(teacher_logits)],
        config.train_config(),
        weight_transform=lambda key, weight: fake_quantize_weight(weight, config.granularity),
        on_epoch=on_epoch,
        interrupt=interrupt,
    )
    trained = float_checkpoint(training.state_dict, student.arch, source_format=student.source_format)
    quantized = None
    if config.convert:
        converted = quantize_dynamic(trained, PTQConfig(granularity=config.granularity)).checkpoint
        quantized = dataclasses.replace(converted, quantization={**(converted.quantization or {}), "mode": "qat"})
    return QATResult(
        checkpoint=trained,
        quantized=quantized,
        training=training,
        float_param_bytes=trained.param_bytes,
        quantized_param_bytes=quantized.param_bytes if quantized is not None else None,
        elapsed_seconds=time.perf_counter() - started,
    )


QuantizationMethod = Literal["dynamic", "static", "qat", "retrained_ptq"]


@dataclass(frozen=True)
class QuantizationAttempt:
    """One method tried: its int8 checkpoint (None if skipped), how it was judged, and the verdict.

    ``selection`` holds the figures the choice was made on (the held-out
    selection rows of the training states): ``agreement_vs_float`` and, with
    a teacher, ``agreement_vs_teacher``. ``report`` holds the same figures and
    the full fidelity block on ``eval_states``, which no choice looked at.
    """

    method: QuantizationMethod
    checkpoint: Checkpoint | None
    selection: dict[str, float | None] | None
    report: dict[str, Any] | None
    kept: bool
    reason: str
    elapsed_seconds: float

    def figure(self, name: str) -> float:
        """A selection figure of an attempt that ran (a skipped one has none)."""
        value = (self.selection or {}).get(name)
        if value is None:
            raise ValueError(f"the {self.method} attempt has no selection figure {name!r}")
        return value


@dataclass(frozen=True)
class QuantizationChoice:
    """Every attempt in the order tried; ``chosen`` is the kept one; ``passed`` says whether it keeps what the float
    model knew.
    """

    attempts: list[QuantizationAttempt]
    passed: bool
    selection_rows: int
    training_rows: int

    @property
    def chosen(self) -> QuantizationAttempt:
        return next(attempt for attempt in self.attempts if attempt.kept)


@single_threaded
def choose_quantization(
    checkpoint: Checkpoint,
    states: torch.Tensor | np.ndarray,
    eval_states: torch.Tensor | np.ndarray,
    config: QuantizationChoiceConfig = QuantizationChoiceConfig(),
    teacher: Checkpoint | None = None,
    interrupt: Interrupt | None = None,
) -> QuantizationChoice:
    """PTQ if it keeps the float model's behaviour, else the best retrained int8 model, chosen fairly.

    ``states`` are split (seeded, ``selection_fraction``) into training rows,
    which calibrate static PTQ and train QAT, and selection rows, on which
    every decision is made. ``eval_states`` only feed the report.

    1. Dynamic, then static PTQ; the first whose agreement with the float
       model on the selection rows reaches ``min_agreement`` is kept.
    2. Otherwise, with a ``teacher``: QAT (``config.qat``) and its fair
       control, ``retrained_ptq``: the same float student trained for the same
       epochs with the same loss, lr, batch and seed but without fake
       quantization, then dynamic PTQ. Both spend the same extra training, so
       only their difference is what quantization awareness buys. The kept
       model is the one of PTQ, QAT and the control that agrees best with the
       teacher on the selection rows (the earliest on ties): QAT is kept only
       when it beats both.
    3. Without a teacher the best PTQ attempt is kept.

    ``passed``, on ``eval_states``: a kept PTQ model agrees with the float
    model at least ``min_agreement``; a kept retrained model agrees with the
    teacher at least as well as the float model does, less ``1 - min_agreement``.
    ``interrupt`` (``core.interrupt``) reaches static calibration and both
    retrainings' steps. Pure: the caller stores the checkpoints.
    """
    if checkpoint.format != "float32":
        raise ValueError(f"choose_quantization needs a float32 checkpoint, got {checkpoint.format}")
    input_dim = checkpoint.arch.input_dim
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), input_dim))
    if state_tensor.shape[0] < 4:
        raise ValueError(f"states must hold at least 4 rows (training and selection), got {state_tensor.shape[0]}")
    split = train_val_split(
        state_tensor.shape[0],
        config.selection_fraction,
        torch.Generator().manual_seed(derive_seed(config.qat.seed, "quantize/selection")),
    )
    training, selection = state_tensor[split.train].contiguous(), state_tensor[split.val].contiguous()
    judges = {
        "selection": _Judge(checkpoint, teacher, selection),
        "report": _Judge(checkpoint, teacher, torch.from_numpy(validate_states(np.asarray(eval_states), input_dim))),
    }
    ptq_config = dataclasses.replace(config.ptq, mode="dynamic")
    attempts: list[QuantizationAttempt] = []

    def attempt(method: QuantizationMethod, build: Callable[[], Checkpoint | None]) -> QuantizationAttempt:
        started = time.perf_counter()
        quantized = build()
        if quantized is None:
            raise ValueError(f"the {method} attempt produced no int8 checkpoint")
        tried = QuantizationAttempt(
            method,
            quantized,
            judges["selection"].figures(quantized),
            judges["report"].report(quantized),
            False,
            "",
            time.perf_counter() - started,
        )
        attempts.append(tried)
        return tried

    def decide(kept: QuantizationAttempt, why: str) -> QuantizationChoice:
        judged, passed = _verdicts(attempts, kept, why, config.min_agreement)
        return QuantizationChoice(
            judged, passed, selection_rows=int(selection.shape[0]), training_rows=int(training.shape[0])
        )

    ptq_methods: tuple[tuple[QuantizationMethod, Callable[[], Checkpoint]], ...] = (
        ("dynamic", lambda: quantize_dynamic(checkpoint, ptq_config).checkpoint),
        (
            "static",
            lambda: (
                quantize_static(
                    checkpoint, training, dataclasses.replace(ptq_config, mode="static"), interrupt
                ).checkpoint
            ),
        ),
    )
    for method, build in ptq_methods:
        if attempt(method, build).figure("agreement_vs_float") >= config.min_agreement:
            return decide(
                attempts[-1],
                f"agreement with the float model {attempts[-1].figure('agreement_vs_float'):.4f} >= "
                f"{config.min_agreement}",
            )
    best_ptq = max(attempts, key=lambda tried: tried.figure("agreement_vs_float"))
    if teacher is None:
        attempts.append(QuantizationAttempt("qat", None, None, None, False, "skipped: QAT needs a teacher", 0.0))
        return decide(
            best_ptq, f"no PTQ method reached {config.min_agreement}; the best PTQ model is kept (QAT needs a teacher)"
        )
    qat_config = dataclasses.replace(config.qat, convert=True)
    attempt("qat", lambda: qat(checkpoint, teacher, training, qat_config, interrupt=interrupt).quantized)
    retrained = lambda: _retrained(checkpoint, teacher, training, qat_config, interrupt)  # noqa: E731
    attempt(
        "retrained_ptq",
        lambda: (
            quantize_dynamic(
                retrained(), dataclasses.replace(ptq_config, granularity=qat_config.granularity)
            ).checkpoint
        ),
    )
    kept = max([best_ptq, *attempts[-2:]], key=lambda tried: tried.figure("agreement_vs_teacher"))
    figures = ", ".join(
        f"{tried.method} {tried.figure('agreement_vs_teacher'):.4f}" for tried in (best_ptq, *attempts[-2:])
    )
    return decide(kept, f"best agreement with the teacher on the selection rows ({figures})")


class _Judge:
    """The float model's and the teacher's Q-values on one set of states, to compare int8 models with."""

    def __init__(self, checkpoint: Checkpoint, teacher: Checkpoint | None, states: torch.Tensor) -> None:
        self.states = states
        with torch.no_grad():
            self.float_q = inference_forward(checkpoint)(states)
            self.teacher_q = inference_forward(teacher)(states) if teacher is not None else None

    def figures(self, quantized: Checkpoint, quant_q: torch.Tensor | None = None) -> dict[str, float | None]:
        if quant_q is None:
            with torch.no_grad():
                quant_q = inference_forward(quantized)(self.states)
        return {
            "agreement_vs_float": metrics.action_agreement(self.float_q, quant_q),
            "agreement_vs_teacher": metrics.action_agreement(self.teacher_q, quant_q)
            if self.teacher_q is not None
            else None,
            "float_agreement_vs_teacher": metrics.action_agreement(self.teacher_q, self.float_q)
            if self.teacher_q is not None
            else None,
        }

    def report(self, quantized: Checkpoint) -> dict[str, Any]:
        with torch.no_grad():
            quant_q = inference_forward(quantized)(self.states)
        return {**self.figures(quantized, quant_q), "fidelity": metrics.fidelity(self.float_q, quant_q)}


def _retrained(
    checkpoint: Checkpoint, teacher: Checkpoint, states: torch.Tensor, config: QATConfig, interrupt: Interrupt | None
) -> Checkpoint:
    """``checkpoint`` trained toward ``teacher`` exactly as QAT would train it, without the fake quantization."""
    with torch.no_grad():
        teacher_logits = inference_forward(teacher)(states)
    result = train(
        checkpoint.arch,
        checkpoint.tensors,
        states,
        [TeacherTarget(teacher_logits)],
        config.train_config(),
        interrupt=interrupt,
    )
    return float_checkpoint(result.state_dict, checkpoint.arch, source_format=checkpoint.source_format)


def _verdicts(
    attempts: list[QuantizationAttempt], kept: QuantizationAttempt, why: str, min_agreement: float
) -> tuple[list[QuantizationAttempt], bool]:
    """Mark the kept attempt, give every other a reason, and judge the kept one on the report states."""
    judged = []
    for tried in attempts:
        if tried is kept:
            judged.append(dataclasses.replace(tried, kept=True, reason=f"kept: {why}"))
        elif tried.checkpoint is not None:
            judged.append(dataclasses.replace(tried, reason=f"not kept: {why}"))
        else:
            judged.append(tried)
    report = kept.report
    if report is None:
        raise ValueError(f"the kept {kept.method} attempt was skipped")
    if kept.method in ("dynamic", "static"):
        passed = report["agreement_vs_float"] >= min_agreement
    else:
        passed = report["agreement_vs_teacher"] >= report["float_agreement_vs_teacher"] - (1.0 - min_agreement)
    return judged, passed
