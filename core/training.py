"""The one training loop: distillation, dual-teacher fine-tuning and QAT.

A student ``QNetwork`` is fitted to precomputed teacher Q-values ("logits",
``(n_states, n_actions)`` float32). The loss per teacher is the reference's
(§3)::

    soft  = KL(softmax(t / T) || softmax(s / T)) * T^2      (loss_fn "kl")
          = mean((s - t)^2) on raw Q-values                  (loss_fn "mse", no hard term)
    hard  = CE(s, argmax t)
    total = alpha * soft + (1 - alpha) * hard

and with several teachers the weighted sum over teachers (weights normalised),
which is the dual-teacher loss ``w * KL(A || c) + (1 - w) * KL(B || c)``.
Cross-entropy is linear in its target, so that sum equals one loss against the
weight-mixed teacher probabilities plus a per-state constant: each step costs
the same for one teacher or several.

Speed: these networks are tiny, so a step is pure per-operator overhead. The
step therefore runs a hand-written forward and backward (about 25 aten calls,
no autograd graph) on parameters that are views of one flat buffer, so that
gradient clipping and Adam are a handful of operations on a single tensor.
``test_training.py`` checks the gradients and the Adam update against autograd
and ``torch.optim.Adam``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Literal

import torch
from torch.nn import functional as F

from core import metrics
from core.networks import LAYERNORM_EPS, LAYERNORM_INDICES, LINEAR_INDICES, STATE_DICT_KEYS, QNetwork, functional_forward
from core.states import Split, derive_seed, train_val_split

LossFn = Literal["kl", "mse"]
WeightTransform = Callable[[str, torch.Tensor], torch.Tensor]
LINEAR_WEIGHT_KEYS = tuple(f"network.{index}.weight" for index in LINEAR_INDICES)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every training stage (reference defaults).

    ``alpha`` 1.0 means pure soft loss; ``temp_decay`` multiplies T after each
    epoch; ``max_grad_norm`` None turns clipping off; ``val_fraction`` 0 means
    no validation split (best epoch by train loss); ``early_stopping_patience``
    0 turns early stopping off. Every random draw (split, shuffling, dropout)
    comes from a generator derived from ``seed``.
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    temperature: float = 3.0
    temp_decay: float = 1.0
    alpha: float = 1.0
    loss_fn: LossFn = "kl"
    max_grad_norm: float | None = 1.0
    val_fraction: float = 0.1
    early_stopping_patience: int = 0
    seed: int = 0

    @classmethod
    def taken_from(cls, stage_config: object) -> TrainConfig:
        """The training settings of a stage's config (distill, QAT, fine-tune): every field of this class it has."""
        names = [field.name for field in dataclasses.fields(cls) if hasattr(stage_config, field.name)]
        return cls(**{name: getattr(stage_config, name) for name in names})

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("early_stopping_patience", self.early_stopping_patience, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if not _finite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not _finite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not _finite(self.temp_decay) or not 0 < self.temp_decay <= 1:
            raise ValueError(f"temp_decay must be in (0, 1], got {self.temp_decay!r}")
        if not _finite(self.alpha) or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.loss_fn not in ("kl", "mse"):
            raise ValueError(f"loss_fn must be 'kl' or 'mse', got {self.loss_fn!r}")
        if self.max_grad_norm is not None and (not _finite(self.max_grad_norm) or self.max_grad_norm <= 0):
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        if not _finite(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.early_stopping_patience > 0 and self.val_fraction == 0:
            raise ValueError("early_stopping_patience needs a validation split: val_fraction is 0")


@dataclass(frozen=True)
class TeacherTarget:
    """Precomputed Q-values of one frozen teacher on the training states, and its loss weight.

    ``logits`` is ``(n_states, n_actions)`` float32, row ``i`` for state ``i``.
    """

    logits: torch.Tensor
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.logits, torch.Tensor) or self.logits.dim() != 2 or self.logits.dtype != torch.float32:
            raise ValueError(f"logits must be a 2-D float32 tensor, got {_describe(self.logits)}")
        if not bool(torch.isfinite(self.logits).all()):
            raise ValueError("logits must be finite")
        if not _finite(self.weight) or self.weight <= 0:
            raise ValueError(f"weight must be > 0, got {self.weight!r}")


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

    ``state_dict`` holds the ten float32 tensors of the best epoch (lowest
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


def train(
    student: QNetwork,
    states: torch.Tensor,
    targets: Sequence[TeacherTarget],
    config: TrainConfig,
    *,
    weight_transform: WeightTransform | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Fit ``student`` to the teachers' Q-values on ``states`` and return the best epoch.

    ``states`` is ``(n_states, input_dim)`` float32; every target's logits are
    ``(n_states, output_dim)``. The validation rows (``train_val_split`` with a
    generator derived from ``config.seed``) are never trained on. The student
    trains with its own ``arch.dropout_rate`` and is left holding the best weights.
    ``weight_transform(key, weight)`` is applied to the three Linear weights in
    every forward, training and validation; its gradient is taken as the
    identity (a straight-through estimator, as QAT's fake quantization needs).
    ``on_epoch`` is called after each epoch; an exception it raises aborts
    training. Same inputs and ``config.seed`` give bit-identical weights.
    """
    started = time.perf_counter()
    _check_inputs(student, states, targets)
    split = training_split(states.shape[0], config)
    shuffle_generator = _generator(config.seed, "shuffle")
    dropout = _Dropout(student.arch.dropout_rate, _generator(config.seed, "dropout"))
    total_weight = sum(target.weight for target in targets)
    weights = [target.weight / total_weight for target in targets]
    params = _FlatParams(student.state_dict())
    adam = _Adam(params.flat, params.grad, config.lr)
    clip = _GradClipper(params.grad, config.max_grad_norm) if config.max_grad_norm is not None else None
    train_states, val_states = states[split.train].contiguous(), states[split.val].contiguous()
    val_primary = targets[0].logits[split.val]
    n_train = train_states.shape[0]

    temperature = config.temperature
    objective = _Objective.build(targets, weights, temperature, config, split.train, split.val)
    initial = _evaluate(params, weight_transform, objective, train_states, val_states, val_primary, epoch=0)
    best_state = params.flat.clone()
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
        )
        # Loss sums stay tensors: no host synchronisation inside the epoch.
        soft_sums: list[torch.Tensor] = []
        hard_sums: list[torch.Tensor] = []
        with torch.no_grad():
            for batch_states, batch_soft, batch_hard in batches:
                soft_sum, hard_sum = _train_step(params, batch_states, batch_soft, batch_hard, objective, weight_transform, dropout)
                if clip is not None:
                    clip()
                adam.step()
                soft_sums.append(soft_sum)
                if hard_sum is not None:
                    hard_sums.append(hard_sum)
        train_losses = objective.train.mean_losses(objective, torch.stack(soft_sums).sum(), torch.stack(hard_sums).sum() if hard_sums else None)
        record = _evaluate(params, weight_transform, objective, None, val_states, val_primary, epoch=epoch, train_losses=train_losses)
        history.append(record)
        loss = _selection_loss(record)
        if loss < best_loss:
            best_loss, best_epoch, stale_epochs = loss, epoch, 0
            best_state.copy_(params.flat)
        else:
            stale_epochs += 1
        if on_epoch is not None:
            on_epoch(record)
        if config.early_stopping_patience and stale_epochs >= config.early_stopping_patience and epoch < config.epochs:
            early_stopped = True
            break
        temperature *= config.temp_decay

    params.flat.copy_(best_state)
    state_dict = params.state_dict()
    student.load_state_dict(state_dict)
    return TrainResult(
        state_dict=state_dict,
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        initial=initial,
        early_stopped=early_stopped,
        elapsed_seconds=time.perf_counter() - started,
    )


def training_split(n_states: int, config: TrainConfig) -> Split:
    """The train/validation rows ``train`` uses for ``config``, so a caller can fit anything on the training rows only."""
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

    def mean_losses(self, objective: _Objective, soft_sum: torch.Tensor, hard_sum: torch.Tensor | None) -> tuple[float, float | None]:
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
        cls, targets: Sequence[TeacherTarget], weights: list[float], temperature: float, config: TrainConfig, train_rows: torch.Tensor, val_rows: torch.Tensor
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
            return _Rows(soft[index], hard[index] if hard is not None else None, float(offset[index].double().sum()), int(index.numel()))

        return cls(config.loss_fn, config.alpha if hard is not None else 1.0, temperature, rows(train_rows), rows(val_rows))

    def sums_and_grad(self, logits: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Row sums of the loss terms and d(batch-mean total loss)/d(logits); all tensors, no sync.

        ``logits``, ``soft`` and ``hard`` are ``(batch, n_actions)``. The sums
        are ``sum p log q`` for kl and hard (negated later, once per epoch) and
        ``sum (z - t)^2 / n_actions`` for mse, all without the per-row offsets.
        """
        batch = logits.shape[0]
        if self.loss_fn == "mse":
            difference = logits - soft
            flat_difference = difference.view(-1)
            return torch.dot(flat_difference, flat_difference) / logits.shape[1], None, difference.mul_(2.0 / difference.numel())
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
    """The ten student tensors as views of one flat float32 buffer, plus a gradient buffer of the same layout."""

    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        shapes = [state_dict[key].shape for key in STATE_DICT_KEYS]
        sizes = [math.prod(shape) for shape in shapes]
        self.flat = torch.cat([state_dict[key].detach().reshape(-1).to(torch.float32) for key in STATE_DICT_KEYS])
        self.grad = torch.zeros_like(self.flat)
        self.views = {key: part.view(shape) for key, part, shape in zip(STATE_DICT_KEYS, self.flat.split(sizes), shapes, strict=True)}
        self.grads = {key: part.view(shape) for key, part, shape in zip(STATE_DICT_KEYS, self.grad.split(sizes), shapes, strict=True)}
        self._layers = _Layers.of(self.views)
        grads = _Layers.of(self.grads)
        self.linear_grads = tuple(zip(grads.weights, grads.biases, strict=True))
        self.norm_grads = grads.norms

    def layers(self, weight_transform: WeightTransform | None) -> _Layers:
        """The tensors a forward uses; the views themselves (updated in place by Adam) without a transform."""
        if weight_transform is None:
            return self._layers
        return _Layers.of(self.forward_params(weight_transform))

    def forward_params(self, weight_transform: WeightTransform | None) -> dict[str, torch.Tensor]:
        if weight_transform is None:
            return self.views
        return {**self.views, **{key: weight_transform(key, self.views[key]) for key in LINEAR_WEIGHT_KEYS}}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {key: view.clone() for key, view in self.views.items()}


@dataclass(frozen=True)
class _Layers:
    """Forward tensors of one step, Linear weights also pre-transposed (saves a ``t()`` per call)."""

    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    weights_t: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    biases: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    norms: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def of(cls, params: dict[str, torch.Tensor]) -> _Layers:
        weights = tuple(params[f"network.{index}.weight"] for index in LINEAR_INDICES)
        return cls(
            weights=weights,
            weights_t=tuple(weight.t() for weight in weights),
            biases=tuple(params[f"network.{index}.bias"] for index in LINEAR_INDICES),
            norms=tuple((params[f"network.{index}.weight"], params[f"network.{index}.bias"]) for index in LAYERNORM_INDICES),
        )


class _Dropout:
    """Inverted dropout after each ReLU, masks drawn from a private generator."""

    def __init__(self, rate: float, generator: torch.Generator) -> None:
        self.keep = 1.0 - rate
        self.generator = generator

    def relu_forward(self, normed: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(normed)
        if self.keep == 1.0:
            return hidden
        mask = torch.empty_like(hidden).bernoulli_(self.keep, generator=self.generator)
        return hidden.mul_(mask).mul_(1.0 / self.keep)

    def relu_backward(self, grad: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        # hidden > 0 exactly where the unit was positive and kept, so one threshold covers both masks.
        grad = torch.ops.aten.threshold_backward(grad, hidden, 0)
        return grad if self.keep == 1.0 else grad.mul_(1.0 / self.keep)


def _train_step(
    params: _FlatParams,
    states: torch.Tensor,
    soft: torch.Tensor,
    hard: torch.Tensor | None,
    objective: _Objective,
    weight_transform: WeightTransform | None,
    dropout: _Dropout,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward and backward of one ``(batch, input_dim)`` batch; writes ``params.grad``, returns the loss sums."""
    layers = params.layers(weight_transform)
    (_, w4, w8), (w0_t, w4_t, w8_t), (b0, b4, b8) = layers.weights, layers.weights_t, layers.biases
    (gamma1, beta1), (gamma5, beta5) = layers.norms
    pre1 = torch.addmm(b0, states, w0_t)
    normed1, mean1, rstd1 = torch.native_layer_norm(pre1, gamma1.shape, gamma1, beta1, LAYERNORM_EPS)
    hidden1 = dropout.relu_forward(normed1)
    pre5 = torch.addmm(b4, hidden1, w4_t)
    normed5, mean5, rstd5 = torch.native_layer_norm(pre5, gamma5.shape, gamma5, beta5, LAYERNORM_EPS)
    hidden5 = dropout.relu_forward(normed5)
    logits = torch.addmm(b8, hidden5, w8_t)
    soft_sum, hard_sum, grad_logits = objective.sums_and_grad(logits, soft, hard)

    (grad_w0, grad_b0), (grad_w4, grad_b4), (grad_w8, grad_b8) = params.linear_grads
    grads_norm1, grads_norm5 = params.norm_grads
    _linear_backward(grad_logits, hidden5, grad_w8, grad_b8)
    grad_normed5 = dropout.relu_backward(grad_logits.mm(w8), hidden5)
    grad_pre5 = _layer_norm_backward(grad_normed5, pre5, mean5, rstd5, gamma5, beta5, grads_norm5)
    _linear_backward(grad_pre5, hidden1, grad_w4, grad_b4)
    grad_normed1 = dropout.relu_backward(grad_pre5.mm(w4), hidden1)
    grad_pre1 = _layer_norm_backward(grad_normed1, pre1, mean1, rstd1, gamma1, beta1, grads_norm1)
    _linear_backward(grad_pre1, states, grad_w0, grad_b0)
    return soft_sum, hard_sum


def _linear_backward(grad_out: torch.Tensor, inputs: torch.Tensor, grad_weight: torch.Tensor, grad_bias: torch.Tensor) -> None:
    """Write dL/dW ``(out, in)`` and dL/db ``(out,)`` of ``out = inputs @ W.T + b`` into the gradient buffer."""
    torch.mm(grad_out.t(), inputs, out=grad_weight)
    torch.sum(grad_out, 0, out=grad_bias)


def _layer_norm_backward(
    grad_out: torch.Tensor,
    inputs: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    grads: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Write the LayerNorm weight and bias gradients into the gradient buffer; return dL/d(inputs)."""
    grad_in, grad_weight, grad_bias = torch.ops.aten.native_layer_norm_backward(grad_out, inputs, weight.shape, mean, rstd, weight, bias, [True, True, True])
    grads[0].copy_(grad_weight)
    grads[1].copy_(grad_bias)
    return grad_in


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
    """``torch.optim.Adam(fused=True)`` (betas 0.9/0.999, eps 1e-8, no weight decay) on one flat tensor.

    One fused kernel per step; ``torch.optim.Adam`` calls the same kernel
    behind about 25 us of per-step Python bookkeeping.
    """

    def __init__(self, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        self.tensors = ([param], [grad], [torch.zeros_like(param)], [torch.zeros_like(param)], [], [torch.zeros(())])
        self.lr = lr
        self.one = torch.ones(())

    def step(self) -> None:
        self.tensors[5][0].add_(self.one)
        beta1, beta2 = ADAM_BETAS
        torch._fused_adam_(*self.tensors, lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False)


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
        forward_params = params.forward_params(weight_transform)
        if train_losses is None:
            train_losses = _split_losses(objective, objective.train, functional_forward(forward_params, train_states))
        train_soft, train_hard = train_losses
        val_loss = agreement = similarity = None
        if objective.val.n_rows:
            val_logits = functional_forward(forward_params, val_states)
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


def _check_inputs(student: QNetwork, states: torch.Tensor, targets: Sequence[TeacherTarget]) -> None:
    arch = student.arch
    if not isinstance(states, torch.Tensor) or states.dim() != 2 or states.dtype != torch.float32:
        raise ValueError(f"states must be a 2-D float32 tensor, got {_describe(states)}")
    if states.shape[1] != arch.input_dim:
        raise ValueError(f"states have width {states.shape[1]} but the student's input_dim is {arch.input_dim}")
    if not targets:
        raise ValueError("targets must hold at least one TeacherTarget")
    for position, target in enumerate(targets):
        expected = (states.shape[0], arch.output_dim)
        if tuple(target.logits.shape) != expected:
            raise ValueError(f"targets[{position}].logits must have shape {list(expected)}, got {list(target.logits.shape)}")


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__
