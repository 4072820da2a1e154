"""Knowledge distillation of a parent Q-network into a smaller student (reference §3).

The teacher is evaluated once on all states (frozen, eval mode); the student
is then fitted by ``core.training.train`` to the soft targets.

One deliberate change from the reference recipe: the student trains without
dropout by default (``dropout_rate`` 0.0; the reference uses 0.05). The target
is a deterministic function the student under-fits rather than over-fits
(train and held-out agreement are within a point of each other), so dropout
only adds gradient noise: on the baseline (8-64-4 teachers of seeds 0 and 1,
5000 states, 25 epochs) it costs 1-4 points of held-out agreement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.networks import QNetworkArch, functional_forward, init_network, student_arch
from core.quantize import dequantize
from core.states import derive_seed
from core.training import EpochMetrics, TeacherTarget, TrainConfig, TrainResult, train


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings; defaults are the reference's except ``dropout_rate`` (see the module docstring).

    ``hidden_size`` None gives the reference student width
    ``max(16, teacher_hidden // 2)``. ``seed`` drives the student's initial
    weights, the train/val split, shuffling and dropout (each from its own
    derived seed).
    """

    temperature: float = 3.0
    temp_decay: float = 1.0
    alpha: float = 1.0
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    max_grad_norm: float | None = 1.0
    val_fraction: float = 0.1
    loss_fn: Literal["kl", "mse"] = "kl"
    early_stopping_patience: int = 0
    seed: int = 0
    hidden_size: int | None = None
    dropout_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.hidden_size is not None and (not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool) or not 1 <= self.hidden_size <= 4096):
            raise ValueError(f"hidden_size must be an integer in [1, 4096] or None, got {self.hidden_size!r}")
        if not isinstance(self.dropout_rate, int | float) or not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        self.train_config()  # the shared training fields are checked there, once

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            temperature=self.temperature,
            temp_decay=self.temp_decay,
            alpha=self.alpha,
            loss_fn=self.loss_fn,
            max_grad_norm=self.max_grad_norm,
            val_fraction=self.val_fraction,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
        )

    def student_arch(self, teacher: QNetworkArch) -> QNetworkArch:
        return dataclasses.replace(student_arch(teacher, self.hidden_size), dropout_rate=self.dropout_rate)


@dataclass(frozen=True)
class DistillResult:
    """The student (best epoch) and its curves.

    ``history`` has one ``EpochMetrics`` per epoch (soft/hard/total train loss,
    val loss, held-out action agreement and probability similarity at that
    epoch's T); ``initial`` is the untrained student; ``best_epoch`` counts
    from 1. ``teacher_dequantized`` says the teacher was an int8 checkpoint
    distilled through its dequantized weights.
    """

    student: Checkpoint
    history: list[EpochMetrics]
    initial: EpochMetrics | None
    best_epoch: int
    best_val_loss: float
    early_stopped: bool
    teacher_dequantized: bool
    final_temperature: float
    elapsed_seconds: float

    @property
    def final(self) -> EpochMetrics:
        """The figures of the returned (best) epoch."""
        return self.history[self.best_epoch - 1] if self.best_epoch else self.initial


def distill(
    teacher: Checkpoint,
    states: np.ndarray | torch.Tensor,
    config: DistillConfig = DistillConfig(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> DistillResult:
    """Distill ``teacher`` (float32 or int8 checkpoint) into a fresh student on ``states``.

    ``states`` is ``(n_states, teacher.arch.input_dim)``, float32 (other float
    dtypes are cast). The student is ``config.student_arch(teacher.arch)``,
    initialised by ``init_network`` from ``derive_seed(config.seed, "init")``;
    the returned float32 checkpoint holds its best-epoch weights and records
    the teacher format and the training config in its metadata. ``on_epoch``
    is passed to ``train`` (progress, cancellation). The student takes the
    teacher's input and output dims by construction; ``ValueError`` for
    states of the wrong shape.
    """
    arch = config.student_arch(teacher.arch)
    state_tensor = _as_states(states, teacher.arch.input_dim)
    with torch.inference_mode():
        teacher_logits = functional_forward(dequantize(teacher), state_tensor)
    student = init_network(arch, derive_seed(config.seed, "init"))
    result: TrainResult = train(student, state_tensor, [TeacherTarget(teacher_logits.clone())], config.train_config(), on_epoch=on_epoch)
    teacher_dequantized = teacher.format != "float32"
    final_temperature = result.history[-1].temperature
    checkpoint = float_checkpoint(
        result.state_dict,
        arch,
        metadata={
            "stage": "distill",
            "teacher_format": teacher.format,
            "teacher_dequantized": teacher_dequantized,
            "config": dataclasses.asdict(config),
            "best_epoch": result.best_epoch,
        },
    )
    return DistillResult(
        student=checkpoint,
        history=result.history,
        initial=result.initial,
        best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        early_stopped=result.early_stopped,
        teacher_dequantized=teacher_dequantized,
        final_temperature=final_temperature,
        elapsed_seconds=result.elapsed_seconds,
    )


def _as_states(states: np.ndarray | torch.Tensor, input_dim: int) -> torch.Tensor:
    tensor = torch.as_tensor(states)
    if tensor.dim() != 2 or not tensor.is_floating_point():
        raise ValueError(f"states must be a 2-D float array (n_states, {input_dim}), got {tensor.dtype} of shape {list(tensor.shape)}")
    if tensor.shape[1] != input_dim:
        raise ValueError(f"states have width {tensor.shape[1]} but the teacher's input_dim is {input_dim}")
    if tensor.shape[0] < 2:
        raise ValueError(f"states must hold at least 2 rows (train and validation), got {tensor.shape[0]}")
    return tensor.to(torch.float32).contiguous()
