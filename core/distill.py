"""Knowledge distillation of a parent Q-network into a smaller student (reference §3).

The teacher is evaluated once on all states (frozen, eval mode); the student
is then fitted by ``core.training.train`` to the soft targets.

Deliberate changes from the reference recipe, all defaults, each chosen for
what it does to the children made from the students (``bench/bench_recombination.py``):

- Students start from one shared initialisation (``init`` "shared"): the
  weights drawn from ``init_seed``, the same for every student of an
  architecture whatever its teacher and training seed. Two students that
  start together stay linearly connected, so their weighted average is a good
  start for a child: after the reference's ``medium`` fine-tune toward A it
  agrees with A on 0.967 of fresh states, against 0.902 for students started
  from their own teachers' units and 0.915 for the reference's own random
  draw per student (teachers 0-5, three seeds).
- The optimiser buys back the quality a shared random start costs without
  letting students wander apart: lr 3e-3, Adam beta2 0.99, and a
  bias-corrected moving average of the weights (decay 0.995) as the result.
  Students agree 0.905 with their teachers on fresh states (0.886 with the
  reference's optimiser from the same start).
- The student trains without dropout (``dropout_rate`` 0.0; the reference
  uses 0.05). The target is a deterministic function the student under-fits
  rather than over-fits, so dropout only adds gradient noise: it cost 1-4
  points of held-out agreement.

``init`` "teacher" starts the student from a subset of the teacher's units:
per hidden layer, the units that best predict the next layer's input on the
training rows, chosen by greedy forward selection, keeping the teacher's
incoming weights and norm parameters, with the weights leaving each kept set
refitted by least squares (about 3 ms). It makes the best students on their
own (0.923) and the worst parents (children 0.908). ``init`` "random" draws a
fresh init from the job's ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    DistillConfig,
    StudentInit,
)
from core.interrupt import Interrupt, checker
from core.networks import QNetworkArch, hidden_activations, init_params
from core.quantize import dequantize
from core.states import derive_seed
from core.threads import single_threaded
from core.training import EpochMetrics, TeacherTarget, TrainResult, train, training_split

# Relative ridge on the refit's normal equations: keeps a unit that is
# (nearly) constant on the training rows from making the system singular.
REFIT_RIDGE = 1e-6
TINY = np.finfo(np.float64).tiny


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
        if self.best_epoch:
            return self.history[self.best_epoch - 1]
        if self.initial is None:
            raise ValueError("no epoch ran and no initial figures were measured")
        return self.initial


@single_threaded
def distill(
    teacher: Checkpoint,
    states: np.ndarray | torch.Tensor,
    config: DistillConfig = DistillConfig(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> DistillResult:
    """Distill ``teacher`` (float32 or int8 checkpoint) into a fresh student on ``states``.

    ``states`` is ``(n_states, teacher.arch.input_dim)``, float32 (other float
    dtypes are cast). The student is ``config.student_arch(teacher.arch)``,
    initialised from the teacher's units on the training rows (``init``
    "teacher") or by ``init_network`` from ``derive_seed(config.seed, "init")``
    ("random"); the validation rows are never used for either. The returned
    float32 checkpoint holds its best-epoch weights and records the teacher
    format, the training config and the per-epoch curves (``history``, non-finite
    values as None) in its metadata. ``on_epoch`` (progress) and ``interrupt``
    (``core.interrupt``: cancellation, limits) are passed to ``train``;
    ``interrupt`` is also called per unit the "teacher" init selects. The student takes the teacher's input and output
    dims by construction; ``ValueError`` for states of the wrong shape or a
    "teacher" init of a student wider than its teacher.
    """
    arch = config.student_arch(teacher.arch)
    wider = [
        position
        for position, (width, teacher_width) in enumerate(
            zip(arch.hidden_sizes, teacher.arch.hidden_sizes, strict=True)
        )
        if width > teacher_width
    ]
    if config.init == "teacher" and wider:
        raise ValueError(
            f"init 'teacher' needs every student width <= the teacher's ({list(teacher.arch.hidden_sizes)}), "
            f"got {list(arch.hidden_sizes)} (layers {wider} wider); use init 'random'"
        )
    state_tensor = _as_states(states, teacher.arch.input_dim)
    teacher_params = dequantize(teacher)
    train_config = config.train_config()
    with torch.no_grad():
        hidden, teacher_logits = hidden_activations(teacher.arch, teacher_params, state_tensor)
    if config.init == "teacher":
        train_rows = training_split(state_tensor.shape[0], train_config).train
        initial = _teacher_subset(
            teacher_params, teacher.arch, [layer[train_rows] for layer in hidden], arch, checker(interrupt)
        )
    else:
        initial = init_params(arch, initial_seed(config))
    result: TrainResult = train(
        arch,
        initial,
        state_tensor,
        [TeacherTarget(teacher_logits)],
        train_config,
        on_epoch=on_epoch,
        interrupt=interrupt,
    )
    teacher_dequantized = teacher.format != "float32"
    final_temperature = result.history[-1].temperature
    checkpoint = float_checkpoint(
        result.state_dict,
        arch,
        source_format=teacher.source_format,
        metadata={
            "stage": "distill",
            "teacher_format": teacher.format,
            "teacher_dequantized": teacher_dequantized,
            "config": dataclasses.asdict(config),
            "best_epoch": result.best_epoch,
            "history": [
                {key: _json_number(value) for key, value in dataclasses.asdict(record).items()}
                for record in result.history
            ],
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


def initial_seed(config: DistillConfig) -> int:
    """The seed of a "shared" or "random" student's initial weights.

    "shared" uses ``init_seed`` alone, so every student of one architecture
    distilled with the same ``init_seed`` starts from the same weights,
    whatever its teacher and training seed: that common start is what lets two
    students be merged (see the module docstring). "random" derives it from
    the job's ``seed``.
    """
    return derive_seed(config.init_seed, "shared-init") if config.init == "shared" else derive_seed(config.seed, "init")


def _as_states(states: np.ndarray | torch.Tensor, input_dim: int) -> torch.Tensor:
    tensor = torch.as_tensor(states)
    if tensor.dim() != 2 or not tensor.is_floating_point():
        raise ValueError(
            f"states must be a 2-D float array (n_states, {input_dim}), got {tensor.dtype} of shape "
            f"{list(tensor.shape)}"
        )
    if tensor.shape[1] != input_dim:
        raise ValueError(f"states have width {tensor.shape[1]} but the teacher's input_dim is {input_dim}")
    if tensor.shape[0] < 2:
        raise ValueError(f"states must hold at least 2 rows (train and validation), got {tensor.shape[0]}")
    return tensor.to(torch.float32).contiguous()


def _teacher_subset(
    teacher: dict[str, torch.Tensor],
    teacher_arch: QNetworkArch,
    hidden: list[torch.Tensor],
    arch: QNetworkArch,
    interrupt: Interrupt,
) -> dict[str, torch.Tensor]:
    """Parameters of a student of ``arch`` built from ``arch.hidden_sizes[l]`` of the teacher's units in each hidden
    layer ``l``.

    ``hidden`` holds the teacher's post-activation outputs of every hidden
    layer on the training rows only, ``(rows, width)`` each. Working back from
    the output, the last hidden layer keeps the units that best predict the
    teacher's Q-values, and each earlier layer those that best predict the
    kept units' pre-activations in the layer after it (``_forward_selection``).
    Kept units copy their LayerNorm parameters (if any); first-layer units also
    their weights and bias; every later Linear is the least-squares fit of the
    teacher's full next-layer input on the kept units, so it absorbs what the
    dropped units carried. All of it works on the hidden layers' means and
    scatter matrices (width x width), so beyond the matrix products it costs
    microseconds.
    """
    teacher_blocks, blocks = teacher_arch.blocks, arch.blocks
    moments = [_moments(layer) for layer in hidden]
    weights = [teacher[block.weight].double().numpy() for block in teacher_blocks]
    biases = [teacher[block.bias].double().numpy() for block in teacher_blocks]
    depth = arch.depth
    keep: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * depth
    # The rows of the next Linear whose inputs layer l must predict: all outputs after the last layer.
    next_rows = np.arange(weights[depth].shape[0])
    for layer in range(depth - 1, -1, -1):
        scatter = moments[layer][1]
        keep[layer] = _forward_selection(
            scatter, scatter @ weights[layer + 1][next_rows].T, arch.hidden_sizes[layer], interrupt
        )
        next_rows = keep[layer]
    tensors: dict[str, torch.Tensor] = {}
    first_rows = torch.from_numpy(keep[0])
    tensors[blocks[0].weight] = teacher[teacher_blocks[0].weight][first_rows]
    tensors[blocks[0].bias] = teacher[teacher_blocks[0].bias][first_rows]
    for layer in range(1, depth + 1):
        rows = keep[layer] if layer < depth else np.arange(weights[layer].shape[0])
        mean, scatter = moments[layer - 1][0], moments[layer - 1][1]
        refit, refit_bias = _refit(scatter, mean, weights[layer][rows], biases[layer][rows], keep[layer - 1])
        tensors[blocks[layer].weight] = torch.from_numpy(refit)
        tensors[blocks[layer].bias] = torch.from_numpy(refit_bias)
    for layer, block in enumerate(blocks[:-1]):
        if block.norm:
            norm_rows = torch.from_numpy(keep[layer])
            tensors[block.norm_weight] = teacher[teacher_blocks[layer].norm_weight][norm_rows]
            tensors[block.norm_bias] = teacher[teacher_blocks[layer].norm_bias][norm_rows]
    return {key: tensors[key].to(torch.float32).contiguous() for key in arch.state_dict_keys()}


def _moments(activations: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Column means ``(n,)`` and scatter matrix ``(n, n)`` (covariance times rows) of ``(rows, n)`` activations,
    float64.
    """
    mean = activations.mean(0).double().numpy()
    # X'X - rows * m m' skips a centred copy of the activations; the subtraction is done in float64.
    gram = (activations.t() @ activations).double().numpy()
    return mean, gram - len(activations) * np.outer(mean, mean)


def _forward_selection(scatter: np.ndarray, cross_scatter: np.ndarray, count: int, interrupt: Interrupt) -> np.ndarray:
    """Greedy forward selection of ``count`` units for a linear fit of some targets; sorted indices.

    ``scatter`` is the units' ``(n, n)`` scatter matrix and ``cross_scatter``
    ``(n, n_targets)`` their scatter with the targets. Each step keeps the unit
    that most lowers the squared residual of the least-squares fit, then
    projects that unit out of the others and of the targets (one Gram-Schmidt
    step on the matrices, so no pass over the data).
    """
    scatter, cross_scatter = scatter.copy(), cross_scatter.copy()
    taken = np.zeros(len(scatter), dtype=bool)
    for _ in range(count):
        interrupt()
        gain = np.square(cross_scatter).sum(1) / np.maximum(scatter.diagonal(), TINY)
        # A kept unit's residual variance is rounding noise: never pick it twice.
        gain[taken] = -1.0
        unit = int(gain.argmax())
        taken[unit] = True
        projection = scatter[:, unit] / max(scatter[unit, unit], TINY)
        cross_scatter -= np.outer(projection, cross_scatter[unit])
        scatter -= np.outer(projection, scatter[unit])
    return np.flatnonzero(taken)


def _refit(
    scatter: np.ndarray, mean: np.ndarray, weight: np.ndarray, bias: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares float32 ``(weight', bias')`` with ``x[keep] @ weight'.T + bias' ~= x @ weight.T + bias``, from x's
    moments.

    ``scatter`` and ``mean`` are x's scatter matrix and column means;
    ``weight`` is ``(n_out, n)``. Returns ``(n_out, len(keep))`` and ``(n_out,)``.
    """
    kept = scatter[np.ix_(keep, keep)]
    ridge = REFIT_RIDGE * kept.diagonal().mean() + TINY
    refitted = np.linalg.solve(kept + ridge * np.eye(len(keep)), scatter[keep] @ weight.T).T
    refitted_bias = bias + weight @ mean - refitted @ mean[keep]
    return np.ascontiguousarray(refitted, dtype=np.float32), refitted_bias.astype(np.float32)


def _json_number(value: object) -> object:
    """JSON has no NaN or infinity: those become None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
