"""The one training loop: distillation, dual-teacher fine-tuning and QAT, for every member of the family.

A student (any ``QNetworkArch``) is fitted to precomputed teacher Q-values
("logits", ``(n_states, n_actions)`` float32). The loss per teacher is the
reference's (§3)::

    soft  = KL(softmax(t / T) || softmax(s / T)) * T^2      (loss_fn "kl")
          = mean((s - t)^2) on raw Q-values                  (loss_fn "mse", no hard term)
    hard  = CE(s, argmax t)
    total = alpha * soft + (1 - alpha) * hard

and with several teachers the weighted sum over teachers (weights normalised),
which is the dual-teacher loss ``w * KL(A || c) + (1 - w) * KL(B || c)``.
Cross-entropy is linear in its target, so that sum equals one loss against the
weight-mixed teacher probabilities plus a per-state constant: each step costs
the same for one teacher or several.

Two engines compute the same steps (``TrainConfig.engine``):

- ``fused`` (default). These networks are tiny, so a step is pure per-operator
  overhead: the step runs a hand-written forward and backward over the layer
  list (no autograd graph) on parameters that are views of one flat buffer, so
  gradient clipping and Adam are a handful of operations on a single tensor.
- ``autograd``: the reference path, ``torch.autograd`` on one leaf tensor per
  parameter, ``clip_grad_norm_`` and ``torch.optim.Adam(fused=True)``.

``test_training.py`` checks the fused gradients against autograd for every
member of the architecture matrix. The fused path uses private torch ops
(``native_layer_norm`` and its aten backward, the aten backward of each
activation, ``_fused_adam_``) only on the torch versions listed in
``PRIVATE_OPS_TORCH_VERSIONS``; on any other version it falls back to public
operations computing the same values, so upgrading torch means adding one
version string after the tests pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat

import torch
from torch.nn import functional as F

from core import metrics
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    MAX_EPOCHS,
    Engine,
    LossFn,
    TrainConfig,
    check_bounds,
    param,
)
from core.interrupt import Interrupt, checker
from core.networks import (
    ELU_ALPHA,
    LAYERNORM_EPS,
    LEAKY_RELU_SLOPE,
    QNetworkArch,
    activation_function,
    check_shapes,
    make_forward,
)
from core.states import derive_seed
from core.threads import single_threaded

WeightTransform = Callable[[str, torch.Tensor], torch.Tensor]
ADAM_EPS = 1e-8
# Torch releases on which the private ops below were checked against autograd
# and torch.optim.Adam (tests/core/test_training.py); add a version here after
# those tests pass on it. Any other version uses the public fallbacks.
PRIVATE_OPS_TORCH_VERSIONS = ("2.13.0",)


@dataclass(frozen=True)
class TeacherTarget:
    """Precomputed Q-values of one frozen teacher on the training states, and its loss weight.

    ``logits`` is ``(n_states, n_actions)`` float32, row ``i`` for state ``i``.
    """

    logits: torch.Tensor
    weight: float = param(1.0, gt=0)

    def __post_init__(self) -> None:
        if not isinstance(self.logits, torch.Tensor) or self.logits.dim() != 2 or self.logits.dtype != torch.float32:
            raise ValueError(f"logits must be a 2-D float32 tensor, got {_describe(self.logits)}")
        if not bool(torch.isfinite(self.logits).all()):
            raise ValueError("logits must be finite")
        check_bounds(self)


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's figures; ``epoch`` counts from 1 (0 is the state before training).

    Losses are per-sample means. Validation figures are None without a
    validation split; agreement and probability similarity compare with the
    first (primary) target, the latter at the epoch's ``temperature``.
    """

    epoch: int
    train_loss: float
    train_soft_loss: float
    train_hard_loss: float | None
    val_loss: float | None
    action_agreement: float | None
    prob_similarity: float | None
    temperature: float


@dataclass(frozen=True)
class TrainResult:
    """The best epoch's weights and the training curves.

    ``state_dict`` holds the float32 tensors (the architecture's keys) of the best epoch (lowest
    validation loss, strictly lower; train loss without a validation split).
    ``initial`` is the untrained student measured like an epoch (train figures
    over the training rows without dropout).
    """

    state_dict: dict[str, torch.Tensor]
    history: list[EpochMetrics]
    best_epoch: int
    best_val_loss: float
    initial: EpochMetrics | None
    early_stopped: bool
    elapsed_seconds: float


@single_threaded
def train(
    arch: QNetworkArch,
    params: Mapping[str, torch.Tensor],
    states: torch.Tensor,
    targets: Sequence[TeacherTarget],
    config: TrainConfig,
    *,
    dropout_rate: float | None = None,
    weight_transform: WeightTransform | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> TrainResult:
    """Fit a student of ``arch``, starting from ``params``, to the teachers' Q-values on ``states``; return the best
    epoch.

    ``params`` holds the float tensors of ``arch`` (its state-dict keys).
    ``states`` is ``(n_states, input_dim)`` float32; every target's logits are
    ``(n_states, output_dim)``. The validation rows (``train_val_split`` with a
    generator derived from ``config.seed``) are never trained on. Dropout is
    ``dropout_rate``, by default ``arch.dropout_rate``.
    ``weight_transform(key, weight)`` is applied to every Linear weight in
    every forward, training and validation; its gradient is taken as the
    identity (a straight-through estimator, as QAT's fake quantization needs).
    ``on_epoch`` is called after each epoch and ``interrupt`` before every
    step (``core.interrupt``); an exception either raises aborts training.
    Same inputs and ``config.seed`` give bit-identical weights at any torch
    thread setting (the loop runs on one thread, ``core.threads``).
    """
    started = time.perf_counter()
    check = checker(interrupt)
    _check_inputs(arch, params, states, targets)
    split = training_split(states.shape[0], config)
    shuffle_generator = _generator(config.seed, "shuffle")
    rate = arch.dropout_rate if dropout_rate is None else float(dropout_rate)
    dropout = _Dropout(rate, _generator(config.seed, "dropout"))
    total_weight = sum(target.weight for target in targets)
    weights = [target.weight / total_weight for target in targets]
    flat = _FlatParams(arch, params)
    stepper: _Stepper
    if config.engine == "fused":
        stepper = _FusedStepper(flat, config, dropout, weight_transform, _Kernels.for_torch(torch.__version__))
    else:
        stepper = _AutogradStepper(flat, config, dropout, weight_transform)
    average = _WeightAverage(flat.flat, config.ema_decay) if config.ema_decay is not None else None
    train_states, val_states = states[split.train].contiguous(), states[split.val].contiguous()
    val_primary = targets[0].logits[split.val]
    n_train = train_states.shape[0]

    temperature = config.temperature
    objective = _Objective.build(targets, weights, temperature, config, split.train, split.val)
    initial = _evaluate(flat, weight_transform, objective, train_states, val_states, val_primary, epoch=0)
    best_state = flat.flat.clone()
    best_loss = _selection_loss(initial)
    best_epoch = 0
    history: list[EpochMetrics] = []
    stale_epochs = 0
    early_stopped = False

    for epoch in range(1, config.epochs + 1):
        if temperature != objective.temperature:
            objective = _Objective.build(targets, weights, temperature, config, split.train, split.val)
        order = torch.randperm(n_train, generator=shuffle_generator)
        # One gather and one split per epoch: every batch is then a view.
        batches = zip(
            train_states[order].split(config.batch_size),
            objective.train.soft[order].split(config.batch_size),
            objective.train.hard[order].split(config.batch_size) if objective.train.hard is not None else repeat(None),
            strict=False,  # hard targets may be an endless repeat(None)
        )
        # Loss sums stay tensors: no host synchronisation inside the epoch.
        soft_sums: list[torch.Tensor] = []
        hard_sums: list[torch.Tensor] = []
        for batch_states, batch_soft, batch_hard in batches:
            check()
            soft_sum, hard_sum = stepper.step(batch_states, batch_soft, batch_hard, objective)
            if average is not None:
                stepper.sync()
                average.update()
            soft_sums.append(soft_sum)
            if hard_sum is not None:
                hard_sums.append(hard_sum)
        stepper.sync()
        train_losses = objective.train.mean_losses(
            objective, torch.stack(soft_sums).sum(), torch.stack(hard_sums).sum() if hard_sums else None
        )
        if average is None:
            record = _evaluate(
                flat, weight_transform, objective, None, val_states, val_primary, epoch=epoch, train_losses=train_losses
            )
        else:
            # The average is what training returns, so it is what is validated; its train loss is measured afresh.
            with average.swapped_in():
                record = _evaluate(
                    flat, weight_transform, objective, train_states, val_states, val_primary, epoch=epoch
                )
        history.append(record)
        loss = _selection_loss(record)
        if loss < best_loss:
            best_loss, best_epoch, stale_epochs = loss, epoch, 0
            best_state.copy_(flat.flat if average is None else average.flat)
        else:
            stale_epochs += 1
        if on_epoch is not None:
            on_epoch(record)
        if config.early_stopping_patience and stale_epochs >= config.early_stopping_patience and epoch < config.epochs:
            early_stopped = True
            break
        temperature *= config.temp_decay

    flat.flat.copy_(best_state)
    return TrainResult(
        state_dict=flat.state_dict(),
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        initial=initial,
        early_stopped=early_stopped,
        elapsed_seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class Split:
    """Row indices of a train/validation split; ``val`` is empty when there is none."""

    train: torch.Tensor
    val: torch.Tensor


def train_val_split(n_states: int, val_fraction: float, generator: torch.Generator) -> Split:
    """Shuffle ``range(n_states)`` and hold out ``max(1, int(n * val_fraction))`` rows.

    The rule of the reference, but drawn from ``generator`` instead of global
    NumPy state. With ``val_fraction <= 0`` (or too few rows) there is no val set.
    """
    order = torch.randperm(n_states, generator=generator)
    if val_fraction <= 0:
        return Split(train=order, val=order[:0])
    n_val = max(1, int(n_states * val_fraction))
    if n_states - n_val <= 0:
        return Split(train=order, val=order[:0])
    return Split(train=order[: n_states - n_val], val=order[n_states - n_val :])


def training_split(n_states: int, config: TrainConfig) -> Split:
    """The train/validation rows ``train`` uses for ``config``, so a caller can fit on the training rows only."""
    return train_val_split(n_states, config.val_fraction, _generator(config.seed, "split"))


@dataclass(frozen=True)
class _Rows:
    """Per-state targets of one split, mixed over teachers.

    ``soft`` is ``sum_i w_i softmax(t_i / T)`` (kl) or ``sum_i w_i t_i`` (mse);
    ``hard`` is ``sum_i w_i onehot(argmax t_i)`` when there is a hard term;
    ``offset`` is the sum over rows of the constant that turns the mixed loss
    back into ``sum_i w_i loss_i`` (teacher entropies, or the teachers' spread for mse).
    """

    soft: torch.Tensor
    hard: torch.Tensor | None
    offset: float
    n_rows: int

    def mean_losses(
        self, objective: _Objective, soft_sum: torch.Tensor, hard_sum: torch.Tensor | None
    ) -> tuple[float, float | None]:
        """Per-sample mean soft and hard losses from the sums ``_Objective.sums_and_grad`` returns."""
        if objective.loss_fn == "kl":
            soft = (self.offset - float(soft_sum)) * objective.temperature**2 / self.n_rows
        else:
            soft = (float(soft_sum) + self.offset) / self.n_rows
        hard = -float(hard_sum) / self.n_rows if hard_sum is not None else None
        return soft, hard


@dataclass(frozen=True)
class _Objective:
    """The loss at one temperature, with the targets of both splits precomputed."""

    loss_fn: LossFn
    alpha: float
    temperature: float
    train: _Rows
    val: _Rows

    @classmethod
    def build(
        cls,
        targets: Sequence[TeacherTarget],
        weights: list[float],
        temperature: float,
        config: TrainConfig,
        train_rows: torch.Tensor,
        val_rows: torch.Tensor,
    ) -> _Objective:
        logits = torch.stack([target.logits for target in targets])
        mix = torch.tensor(weights, dtype=torch.float32).view(-1, 1, 1)
        n_actions = logits.shape[2]
        if config.loss_fn == "kl":
            log_probs = F.log_softmax(logits / temperature, dim=2)
            soft = (mix * log_probs.exp()).sum(0)
            # sum_i w_i sum_a p log p: minus the teachers' entropies.
            offset = (mix * log_probs.exp() * log_probs).sum((0, 2))
        else:
            soft = (mix * logits).sum(0)
            offset = (mix * (logits - soft).square()).sum((0, 2)) / n_actions
        hard = None
        if config.loss_fn == "kl" and config.alpha < 1:
            hard = (mix * F.one_hot(logits.argmax(dim=2), n_actions).to(torch.float32)).sum(0)

        def rows(index: torch.Tensor) -> _Rows:
            return _Rows(
                soft[index],
                hard[index] if hard is not None else None,
                float(offset[index].double().sum()),
                int(index.numel()),
            )

        return cls(
            config.loss_fn, config.alpha if hard is not None else 1.0, temperature, rows(train_rows), rows(val_rows)
        )

    def sums_and_grad(
        self, logits: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Row sums of the loss terms and d(batch-mean total loss)/d(logits); all tensors, no sync.

        ``logits``, ``soft`` and ``hard`` are ``(batch, n_actions)``. The sums
        are ``sum p log q`` for kl and hard (negated later, once per epoch) and
        ``sum (z - t)^2 / n_actions`` for mse, all without the per-row offsets.
        """
        batch = logits.shape[0]
        if self.loss_fn == "mse":
            difference = logits - soft
            flat_difference = difference.view(-1)
            return (
                torch.dot(flat_difference, flat_difference) / logits.shape[1],
                None,
                difference.mul_(2.0 / difference.numel()),
            )
        log_probs = torch.log_softmax(logits.mul(self._inverse_temperature), 1)
        soft_sum = torch.dot(soft.view(-1), log_probs.view(-1))
        # d(T^2 KL(p || softmax(z/T)))/dz = T (softmax(z/T) - p), per row.
        grad = log_probs.exp_().sub_(soft).mul_(self._grad_scale(batch))
        if hard is None:
            return soft_sum, None, grad
        hard_log_probs = torch.log_softmax(logits, 1)
        hard_sum = torch.dot(hard.view(-1), hard_log_probs.view(-1))
        grad.add_(hard_log_probs.exp_().sub_(hard), alpha=(1 - self.alpha) / batch)
        return soft_sum, hard_sum, grad

    @cached_property
    def _inverse_temperature(self) -> torch.Tensor:
        # 0-d tensors: tensor-tensor ops skip the per-call wrapping of a Python scalar.
        return torch.tensor(1.0 / self.temperature)

    def batch_loss(
        self, logits: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch-mean total loss as a differentiable tensor (the autograd engine), with the sums ``sums_and_grad``
        returns.
        """
        batch = logits.shape[0]
        if self.loss_fn == "mse":
            soft_sum = (logits - soft).square().sum() / logits.shape[1]
            return soft_sum / batch, soft_sum, None
        soft_sum = (soft * torch.log_softmax(logits / self.temperature, 1)).sum()
        loss = soft_sum * (-self.alpha * self.temperature**2 / batch)
        if hard is None:
            return loss, soft_sum, None
        hard_sum = (hard * torch.log_softmax(logits, 1)).sum()
        return loss - hard_sum * ((1 - self.alpha) / batch), soft_sum, hard_sum

    def _grad_scale(self, batch: int) -> torch.Tensor:
        scales = self._grad_scales
        if batch not in scales:
            scales[batch] = torch.tensor(self.alpha * self.temperature / batch)
        return scales[batch]

    @cached_property
    def _grad_scales(self) -> dict[int, torch.Tensor]:
        return {}

    def total(self, soft: float, hard: float | None) -> float:
        return soft if hard is None else self.alpha * soft + (1 - self.alpha) * hard


class _FlatParams:
    """The student's tensors as views of one flat float32 buffer, plus a gradient buffer of the same layout."""

    def __init__(self, arch: QNetworkArch, params: Mapping[str, torch.Tensor]) -> None:
        self.arch = arch
        self.keys = arch.state_dict_keys()
        shapes = [tuple(params[key].shape) for key in self.keys]
        sizes = [math.prod(shape) for shape in shapes]
        self.flat = torch.cat([params[key].detach().reshape(-1).to(torch.float32) for key in self.keys])
        self.grad = torch.zeros_like(self.flat)
        self.views = {
            key: part.view(shape) for key, part, shape in zip(self.keys, self.flat.split(sizes), shapes, strict=True)
        }
        self.grads = {
            key: part.view(shape) for key, part, shape in zip(self.keys, self.grad.split(sizes), shapes, strict=True)
        }
        self._layers = _Layer.of(arch, self.views)
        self.grad_layers = _Layer.of(arch, self.grads)

    def layers(self, weight_transform: WeightTransform | None) -> tuple[_Layer, ...]:
        """The tensors a forward uses; the views themselves (updated in place by Adam) without a transform."""
        if weight_transform is None:
            return self._layers
        return _Layer.of(self.arch, self.forward_params(weight_transform))

    def forward_params(self, weight_transform: WeightTransform | None) -> dict[str, torch.Tensor]:
        if weight_transform is None:
            return self.views
        return {**self.views, **{key: weight_transform(key, self.views[key]) for key in self.arch.linear_weight_keys}}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {key: view.clone() for key, view in self.views.items()}


# What a hidden layer's forward keeps for its backward: input, pre-norm, mean, rstd (None without
# LayerNorm), activation input, activation output, dropout mask (None without dropout).
_Saved = tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor | None,
    torch.Tensor | None,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor | None,
]


@dataclass(frozen=True)
class _Layer:
    """One block's tensors (or gradient buffers): Linear weight, its transpose, bias, LayerNorm weight, bias or None."""

    weight: torch.Tensor
    weight_t: torch.Tensor
    bias: torch.Tensor
    norm: tuple[torch.Tensor, torch.Tensor] | None
    hidden: bool

    @classmethod
    def of(cls, arch: QNetworkArch, params: Mapping[str, torch.Tensor]) -> tuple[_Layer, ...]:
        return tuple(
            cls(
                weight=params[block.weight],
                # Pre-transposed once per step: saves a t() per call.
                weight_t=params[block.weight].t(),
                bias=params[block.bias],
                norm=(params[block.norm_weight], params[block.norm_bias]) if block.norm else None,
                hidden=block.hidden,
            )
            for block in arch.blocks
        )


class _Kernels:
    """The handful of operations whose fastest form is a private torch op, each with its public equivalent.

    ``private`` True uses ``native_layer_norm`` and its backward, the aten
    backward of each activation and ``_fused_adam_``; False computes the same
    values with public operations (a few more kernel launches each).
    """

    def __init__(self, private: bool) -> None:
        self.private = private

    @classmethod
    def for_torch(cls, version: str) -> _Kernels:
        """Private ops on a listed torch version that still has them, else the public fallbacks."""
        release = version.split("+")[0]
        aten_ops = (
            "threshold_backward",
            "native_layer_norm_backward",
            "leaky_relu_backward",
            "elu_backward",
            "tanh_backward",
            "silu_backward",
            "gelu_backward",
        )
        available = all(hasattr(torch.ops.aten, name) for name in aten_ops) and all(
            hasattr(torch, name) for name in ("native_layer_norm", "_fused_adam_")
        )
        return cls(private=release in PRIVATE_OPS_TORCH_VERSIONS and available)

    def layer_norm(
        self, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(output, mean, rstd)``; mean and rstd are ``(batch, 1)``."""
        if self.private:
            return torch.native_layer_norm(inputs, weight.shape, weight, bias, LAYERNORM_EPS)
        variance, mean = torch.var_mean(inputs, dim=1, correction=0, keepdim=True)
        rstd = torch.rsqrt(variance.add_(LAYERNORM_EPS))
        return torch.addcmul(bias, (inputs - mean).mul_(rstd), weight), mean, rstd

    def layer_norm_backward(
        self,
        grad_out: torch.Tensor,
        inputs: torch.Tensor,
        mean: torch.Tensor,
        rstd: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(d inputs, d weight, d bias)``."""
        if self.private:
            return torch.ops.aten.native_layer_norm_backward(
                grad_out, inputs, weight.shape, mean, rstd, weight, bias, [True, True, True]
            )
        normalised = (inputs - mean).mul_(rstd)
        grad_weight = (grad_out * normalised).sum(0)
        grad_bias = grad_out.sum(0)
        grad_normalised = grad_out * weight
        # d/dx of (x - mean) * rstd: remove the mean of the gradient and its projection on the normalised input.
        projection = (grad_normalised * normalised).mean(1, keepdim=True)
        grad_in = (
            grad_normalised.sub_(grad_normalised.mean(1, keepdim=True)).sub_(normalised.mul_(projection)).mul_(rstd)
        )
        return grad_in, grad_weight, grad_bias

    def relu_backward(self, grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``grad`` where ``output > 0``, else 0."""
        return (_PRIVATE_ACTIVATION_BACKWARD if self.private else _PUBLIC_ACTIVATION_BACKWARD)["relu"](
            grad,
            output,
            output,  # relu's backward reads only the output
        )


class _Dropout:
    """Inverted dropout after each activation, masks drawn from a private generator (the same draws in both engines)."""

    def __init__(self, rate: float, generator: torch.Generator) -> None:
        self.keep = 1.0 - rate
        self.generator = generator

    @property
    def active(self) -> bool:
        return self.keep < 1.0

    def mask(self, like: torch.Tensor) -> torch.Tensor:
        """0 or ``1 / keep`` per element, shaped like ``like``."""
        return torch.empty_like(like).bernoulli_(self.keep, generator=self.generator).mul_(1.0 / self.keep)


class _ActivationGrad:
    """Forward and backward of one activation for the fused step.

    ``forward(x)`` returns ``y``; ``backward(grad, x, y)`` returns dL/dx from
    dL/dy (it may reuse ``grad``'s storage). ReLU, leaky ReLU and ELU read
    only ``y`` (``y > 0`` exactly where ``x > 0``), as does tanh; GELU and
    SiLU read ``x``, so their forward keeps it.
    """

    def __init__(self, name: str, kernels: _Kernels) -> None:
        self.name = name
        # Out of place where the backward needs the input, in place otherwise.
        self.forward = _OUT_OF_PLACE.get(name) or activation_function(name)
        self.backward = (_PRIVATE_ACTIVATION_BACKWARD if kernels.private else _PUBLIC_ACTIVATION_BACKWARD)[name]


_OUT_OF_PLACE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "silu": F.silu}


def _gelu_backward(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact GELU: d/dx = Phi(x) + x phi(x)."""
    cdf = torch.erf(x * _INV_SQRT2).add_(1.0).mul_(0.5)
    pdf = torch.exp(x * x * -0.5).mul_(_INV_SQRT_2PI)
    return grad.mul_(cdf.addcmul_(x, pdf))


def _silu_backward(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    sigmoid = torch.sigmoid(x)
    return grad.mul_(sigmoid * (1.0 + x * (1.0 - sigmoid)))


_PUBLIC_ACTIVATION_BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relu": lambda grad, x, y: grad.mul_(y > 0),
    "leaky_relu": lambda grad, x, y: grad.mul_(torch.where(y > 0, 1.0, LEAKY_RELU_SLOPE)),
    "elu": lambda grad, x, y: grad.mul_(torch.where(y > 0, 1.0, y + ELU_ALPHA)),
    "tanh": lambda grad, x, y: grad.mul_(1.0 - y * y),
    "silu": _silu_backward,
    "gelu": _gelu_backward,
}
# One aten kernel each (what autograd itself calls), on the versions PRIVATE_OPS_TORCH_VERSIONS lists.
_PRIVATE_ACTIVATION_BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relu": lambda grad, x, y: torch.ops.aten.threshold_backward(grad, y, 0),
    "leaky_relu": lambda grad, x, y: torch.ops.aten.leaky_relu_backward(grad, y, LEAKY_RELU_SLOPE, True),
    "elu": lambda grad, x, y: torch.ops.aten.elu_backward(grad, ELU_ALPHA, 1.0, 1.0, True, y),
    "tanh": lambda grad, x, y: torch.ops.aten.tanh_backward(grad, y),
    "silu": lambda grad, x, y: torch.ops.aten.silu_backward(grad, x),
    "gelu": lambda grad, x, y: torch.ops.aten.gelu_backward(grad, x, approximate="none"),
}


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _Stepper:
    """One optimisation step on a batch: forward, backward, clip, Adam; returns the loss sums."""

    def step(
        self, states: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None, objective: _Objective
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def sync(self) -> None:
        """Make the flat buffer hold the current weights (before an evaluation)."""


class _FusedStepper(_Stepper):
    """The hand-written step over the layer list on the flat buffer."""

    def __init__(
        self,
        params: _FlatParams,
        config: TrainConfig,
        dropout: _Dropout,
        weight_transform: WeightTransform | None,
        kernels: _Kernels,
    ) -> None:
        self.params = params
        self.dropout = dropout
        self.weight_transform = weight_transform
        self.kernels = kernels
        self.activation = _ActivationGrad(params.arch.activation, kernels)
        self.clip = _GradClipper(params.grad, config.max_grad_norm) if config.max_grad_norm is not None else None
        self.adam = _Adam(params.flat, params.grad, config.lr, config.adam_betas, kernels.private)

    def step(self, states, soft, hard, objective):
        with torch.no_grad():
            soft_sum, hard_sum = self.gradients(states, soft, hard, objective)
            if self.clip is not None:
                self.clip()
            self.adam.step()
        return soft_sum, hard_sum

    def gradients(
        self, states: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None, objective: _Objective
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward and backward of one ``(batch, input_dim)`` batch; writes ``params.grad``, returns the loss sums."""
        layers = self.params.layers(self.weight_transform)
        kernels, activation, dropout = self.kernels, self.activation, self.dropout
        saved: list[_Saved] = []
        inputs = states
        for layer in layers[:-1]:
            pre = torch.addmm(layer.bias, inputs, layer.weight_t)
            if layer.norm is not None:
                normed, mean, rstd = kernels.layer_norm(pre, *layer.norm)
            else:
                normed, mean, rstd = pre, None, None
            output = activation.forward(normed)
            activated = output
            mask = None
            if dropout.active:
                mask = dropout.mask(output)
                if activation.name == "relu":
                    # Masked in place: the dropped-out output is > 0 exactly where the gradient passes.
                    output.mul_(mask)
                else:
                    output = output * mask
            saved.append((inputs, pre, mean, rstd, normed, activated, mask))
            inputs = output
        last = layers[-1]
        logits = torch.addmm(last.bias, inputs, last.weight_t)
        soft_sum, hard_sum, grad = objective.sums_and_grad(logits, soft, hard)

        grad_layers = self.params.grad_layers
        _linear_backward(grad, inputs, grad_layers[-1])
        for position in range(len(saved) - 1, -1, -1):
            layer_inputs, pre, mean, rstd, normed, activated, mask = saved[position]
            grad = grad.mm(layers[position + 1].weight)
            if mask is not None and activation.name == "relu":
                # activated is the masked output here: one threshold covers both masks.
                grad = kernels.relu_backward(grad, activated).mul_(1.0 / dropout.keep)
            else:
                if mask is not None:
                    grad = grad.mul_(mask)
                grad = activation.backward(grad, normed, activated)
            layer, grad_layer = layers[position], grad_layers[position]
            if layer.norm is not None and grad_layer.norm is not None and mean is not None and rstd is not None:
                grad, grad_norm_weight, grad_norm_bias = kernels.layer_norm_backward(grad, pre, mean, rstd, *layer.norm)
                grad_layer.norm[0].copy_(grad_norm_weight)
                grad_layer.norm[1].copy_(grad_norm_bias)
            _linear_backward(grad, layer_inputs, grad_layer)
        return soft_sum, hard_sum


def _linear_backward(grad_out: torch.Tensor, inputs: torch.Tensor, grads: _Layer) -> None:
    """Write dL/dW ``(out, in)`` and dL/db ``(out,)`` of ``out = inputs @ W.T + b`` into the gradient buffer."""
    torch.mm(grad_out.t(), inputs, out=grads.weight)
    torch.sum(grad_out, 0, out=grads.bias)


class _AutogradStepper(_Stepper):
    """The reference step: autograd on one leaf tensor per parameter, ``clip_grad_norm_``,
    ``torch.optim.Adam(fused=True)``.

    Dropout masks are drawn in the same order as the fused step's, so both
    engines train on the same batches with the same masks.
    """

    def __init__(
        self, params: _FlatParams, config: TrainConfig, dropout: _Dropout, weight_transform: WeightTransform | None
    ) -> None:
        self.params = params
        self.arch = params.arch
        self.dropout = dropout
        self.weight_transform = weight_transform
        self.max_grad_norm = config.max_grad_norm
        self.leaves = {key: torch.nn.Parameter(view.detach().clone()) for key, view in params.views.items()}
        self.optimizer = torch.optim.Adam(
            list(self.leaves.values()), lr=config.lr, betas=config.adam_betas, eps=ADAM_EPS, fused=True
        )
        self.activation = activation_function(self.arch.activation)

    def step(self, states, soft, hard, objective):
        tensors = dict(self.leaves)
        if self.weight_transform is not None:
            tensors.update({key: self.weight_transform(key, tensors[key]) for key in self.arch.linear_weight_keys})
        outputs = states
        for block in self.arch.blocks:
            outputs = torch.nn.functional.linear(outputs, tensors[block.weight], tensors[block.bias])
            if block.hidden:
                if block.norm:
                    outputs = torch.nn.functional.layer_norm(
                        outputs,
                        (block.out_features,),
                        tensors[block.norm_weight],
                        tensors[block.norm_bias],
                        LAYERNORM_EPS,
                    )
                outputs = self.activation(outputs.clone())
                if self.dropout.active:
                    outputs = outputs * self.dropout.mask(outputs)
        loss, soft_sum, hard_sum = objective.batch_loss(outputs, soft, hard)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(self.leaves.values()), self.max_grad_norm)
        self.optimizer.step()
        return soft_sum.detach(), None if hard_sum is None else hard_sum.detach()

    def sync(self) -> None:
        with torch.no_grad():
            for key, leaf in self.leaves.items():
                self.params.views[key].copy_(leaf)


class _GradClipper:
    """Scale the gradient to L2 norm ``max_norm`` when it is larger, without a host sync.

    ``g * max_norm / max(|g|, max_norm)`` is ``clip_grad_norm_``'s
    ``g * min(1, max_norm / (|g| + 1e-6))`` without the epsilon, which the
    ``max`` makes unnecessary, in four tensor-tensor ops.
    """

    def __init__(self, grad: torch.Tensor, max_norm: float) -> None:
        self.grad = grad
        self.max_norm = torch.tensor(max_norm)

    def __call__(self) -> None:
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.div(self.max_norm, torch.maximum(norm, self.max_norm)))


class _Adam:
    """``torch.optim.Adam`` (eps 1e-8, no weight decay) on one flat tensor.

    With ``private`` it is one ``_fused_adam_`` kernel per step (the kernel
    ``torch.optim.Adam(fused=True)`` calls behind about 25 us of per-step
    Python bookkeeping); otherwise the same update in public in-place ops.
    """

    def __init__(
        self, param: torch.Tensor, grad: torch.Tensor, lr: float, betas: tuple[float, float], private: bool
    ) -> None:
        self.param, self.grad = param, grad
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
        self.step_count = torch.zeros(())
        self.lr = lr
        self.betas = betas
        self.private = private
        self.steps = 0
        self.one = torch.ones(())

    def step(self) -> None:
        beta1, beta2 = self.betas
        if self.private:
            self.step_count.add_(self.one)
            torch._fused_adam_(
                [self.param],
                [self.grad],
                [self.exp_avg],
                [self.exp_avg_sq],
                [],
                [self.step_count],
                lr=self.lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )
            return
        self.steps += 1
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        step_size = self.lr / (1 - beta1**self.steps)
        denominator = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
        self.param.addcdiv_(self.exp_avg, denominator, value=-step_size)


class _WeightAverage:
    """Exponential moving average of the weights after every step, bias-corrected as Adam's moments are.

    ``sum <- decay * sum + (1 - decay) * w`` from zero, and the average is
    ``sum / (1 - decay**steps)``: the weights of the steps taken so far,
    never the starting point, however short the run. Averaging the last few
    hundred steps removes most of the step-to-step noise from the weights
    (see ``core.distill`` for what it buys).
    """

    def __init__(self, live: torch.Tensor, decay: float) -> None:
        self.live = live
        self.sum = torch.zeros_like(live)
        self.decay = decay
        self.steps = 0

    def update(self) -> None:
        self.sum.lerp_(self.live, 1.0 - self.decay)
        self.steps += 1

    @property
    def flat(self) -> torch.Tensor:
        """The average so far (the live weights before the first step)."""
        if self.steps == 0:
            return self.live.clone()
        return self.sum / (1.0 - self.decay**self.steps)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The average in the live buffer for the block (e.g. to evaluate it); the live weights after."""
        live = self.live.clone()
        self.live.copy_(self.flat)
        try:
            yield
        finally:
            self.live.copy_(live)


def _evaluate(
    params: _FlatParams,
    weight_transform: WeightTransform | None,
    objective: _Objective,
    train_states: torch.Tensor | None,
    val_states: torch.Tensor,
    val_primary: torch.Tensor,
    *,
    epoch: int,
    train_losses: tuple[float, float | None] | None = None,
) -> EpochMetrics:
    """Eval-mode figures; train losses are measured on ``train_states`` when not given."""
    with torch.inference_mode():
        forward = make_forward(params.arch, params.forward_params(weight_transform))
        if train_losses is None:
            if train_states is None:
                raise ValueError("train_states are needed when train_losses are not given")
            train_losses = _split_losses(objective, objective.train, forward(train_states))
        train_soft, train_hard = train_losses
        val_loss = agreement = similarity = None
        if objective.val.n_rows:
            val_logits = forward(val_states)
            val_loss = objective.total(*_split_losses(objective, objective.val, val_logits))
            agreement = metrics.action_agreement(val_primary, val_logits)
            similarity = metrics.prob_similarity(val_primary, val_logits, objective.temperature)
    return EpochMetrics(
        epoch=epoch,
        train_loss=objective.total(train_soft, train_hard),
        train_soft_loss=train_soft,
        train_hard_loss=train_hard,
        val_loss=val_loss,
        action_agreement=agreement,
        prob_similarity=similarity,
        temperature=objective.temperature,
    )


def _split_losses(objective: _Objective, rows: _Rows, logits: torch.Tensor) -> tuple[float, float | None]:
    soft_sum, hard_sum, _ = objective.sums_and_grad(logits, rows.soft, rows.hard)
    return rows.mean_losses(objective, soft_sum, hard_sum)


def _selection_loss(record: EpochMetrics) -> float:
    return record.val_loss if record.val_loss is not None else record.train_loss


def _check_inputs(
    arch: QNetworkArch, params: Mapping[str, torch.Tensor], states: torch.Tensor, targets: Sequence[TeacherTarget]
) -> None:
    check_shapes(params, arch)
    if not isinstance(states, torch.Tensor) or states.dim() != 2 or states.dtype != torch.float32:
        raise ValueError(f"states must be a 2-D float32 tensor, got {_describe(states)}")
    if states.shape[1] != arch.input_dim:
        raise ValueError(f"states have width {states.shape[1]} but the student's input_dim is {arch.input_dim}")
    if not targets:
        raise ValueError("targets must hold at least one TeacherTarget")
    for position, target in enumerate(targets):
        expected = (states.shape[0], arch.output_dim)
        if tuple(target.logits.shape) != expected:
            raise ValueError(
                f"targets[{position}].logits must have shape {list(expected)}, got {list(target.logits.shape)}"
            )


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__
