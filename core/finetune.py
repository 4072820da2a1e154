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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.networks import QNetwork
from core.qat import fake_quantize_weight
from core.quantize import PTQConfig, dequantize, inference_forward, quantize
from core.training import EpochMetrics, LossFn, TeacherTarget, TrainConfig, train

RegimeName = Literal["short", "medium", "long", "lr_high", "short_qat"]
QuantizationApplied = Literal["none", "ptq_dynamic", "ptq_static", "qat_float"]


@dataclass(frozen=True)
class Regime:
    epochs: int
    lr: float
    batch_size: int
    quantization_applied: QuantizationApplied = "none"


REGIMES: dict[str, Regime] = {
    "short": Regime(epochs=5, lr=1e-3, batch_size=32),
    "medium": Regime(epochs=10, lr=5e-4, batch_size=32),
    "long": Regime(epochs=20, lr=1e-4, batch_size=32),
    "lr_high": Regime(epochs=5, lr=5e-3, batch_size=32),
    "short_qat": Regime(epochs=5, lr=1e-4, batch_size=16, quantization_applied="ptq_dynamic"),
}
# The reference's fine-tune defaults (FineTuningConfig) fill what neither the caller nor a regime sets.
DEFAULT_REGIME = Regime(epochs=5, lr=1e-3, batch_size=32)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tune settings: a named regime, explicit values, or both (explicit wins).

    ``epochs``, ``lr``, ``batch_size`` and ``quantization_applied`` left as
    None come from ``regime`` (or, with no regime, the reference defaults 5,
    1e-3, 32, "none"); after construction they always hold the values used.
    ``dropout_rate`` is the dropout used while tuning (None: the child
    architecture's rate, as the reference); the default 0 tunes without it,
    which on the baseline students raised held-out agreement with A after
    ``medium`` by about 0.01 (a few epochs toward a fixed target gain nothing
    from the noise). The child keeps its architecture either way.
    ``teacher_weight_a`` is A's share of the dual-teacher loss (1.0 = A only,
    the reference). ``quantization_applied`` other than "none" trains through
    fake int8 weight quantization (a straight-through estimator), so the
    weights learn to survive rounding. ``export_int8`` None means: export an
    int8 checkpoint exactly when ``quantization_applied`` is ``ptq_dynamic`` or
    ``ptq_static`` (``qat_float`` keeps the fake-quant-trained child float).
    """

    regime: RegimeName | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    temperature: float = 3.0
    temp_decay: float = 1.0
    alpha: float = 1.0
    loss_fn: LossFn = "kl"
    max_grad_norm: float | None = 1.0
    val_fraction: float = 0.1
    early_stopping_patience: int = 0
    seed: int = 42
    dropout_rate: float | None = 0.0
    teacher_weight_a: float = 1.0
    quantization_applied: QuantizationApplied | None = None
    export_int8: bool | None = None

    def __post_init__(self) -> None:
        if self.regime is not None and self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {sorted(REGIMES)} or None, got {self.regime!r}")
        base = REGIMES[self.regime] if self.regime is not None else DEFAULT_REGIME
        for name in ("epochs", "lr", "batch_size", "quantization_applied"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(base, name))
        if self.quantization_applied not in ("none", "ptq_dynamic", "ptq_static", "qat_float"):
            raise ValueError(f"quantization_applied must be none, ptq_dynamic, ptq_static or qat_float, got {self.quantization_applied!r}")
        if self.export_int8 is None:
            object.__setattr__(self, "export_int8", self.quantization_applied in ("ptq_dynamic", "ptq_static"))
        if not isinstance(self.export_int8, bool):
            raise ValueError(f"export_int8 must be a bool or None, got {self.export_int8!r}")
        if isinstance(self.teacher_weight_a, bool) or not isinstance(self.teacher_weight_a, (int, float)) or not 0.0 <= self.teacher_weight_a <= 1.0:
            raise ValueError(f"teacher_weight_a must be a number in [0, 1], got {self.teacher_weight_a!r}")
        if self.dropout_rate is not None and (not isinstance(self.dropout_rate, (int, float)) or not 0.0 <= self.dropout_rate < 1.0):
            raise ValueError(f"dropout_rate must be in [0, 1) or None, got {self.dropout_rate!r}")
        # The shared loop validates the optimisation fields and names the bad one.
        self.train_config()

    def train_config(self) -> TrainConfig:
        """The ``core.training`` settings this fine-tune runs with."""
        return TrainConfig.taken_from(self)


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
    elapsed_seconds: float


def finetune(
    child: Checkpoint,
    reference_a: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: FinetuneConfig = FinetuneConfig(regime="medium"),
    reference_b: Checkpoint | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``child`` toward A (and B when ``config.teacher_weight_a < 1``).

    ``states`` is ``(n_states, input_dim)`` float32; the loop holds out
    ``config.val_fraction`` of them (a static int8 export calibrates on all of
    them). Any of the three checkpoints may be int8 (its weights are
    dequantized). Raises ``ValueError`` for mismatched architectures, a dual
    loss without ``reference_b``, or mis-shaped states.
    """
    for name, reference in (("reference_a", reference_a), ("reference_b", reference_b)):
        if reference is not None and not reference.arch.same_shapes(child.arch):
            raise ValueError(f"{name} is {reference.arch.describe()} but the child is {child.arch.describe()}")
    if config.teacher_weight_a < 1.0 and reference_b is None:
        raise ValueError(f"teacher_weight_a {config.teacher_weight_a} needs reference_b, got None")
    state_tensor = _as_states(states, child.arch.input_dim)
    targets = []
    if config.teacher_weight_a > 0.0:
        targets.append(TeacherTarget(_q_values(reference_a, state_tensor), weight=config.teacher_weight_a))
    if config.teacher_weight_a < 1.0:
        targets.append(TeacherTarget(_q_values(reference_b, state_tensor), weight=1.0 - config.teacher_weight_a))
    train_arch = child.arch if config.dropout_rate is None else replace(child.arch, dropout_rate=float(config.dropout_rate))
    network = QNetwork(train_arch)
    network.load_state_dict(dequantize(child), strict=True)
    weight_transform = _fake_quantize if config.quantization_applied != "none" else None
    result = train(network, state_tensor, targets, config.train_config(), weight_transform=weight_transform, on_epoch=on_epoch)
    tuned = float_checkpoint(result.state_dict, arch=child.arch)
    tuned_int8 = None
    if config.export_int8:
        mode = "static" if config.quantization_applied == "ptq_static" else "dynamic"
        tuned_int8 = quantize(tuned, PTQConfig(mode=mode), calibration_states=state_tensor).checkpoint
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
        elapsed_seconds=result.elapsed_seconds,
    )


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
