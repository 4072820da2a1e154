"""Every stage's settings: one frozen dataclass per stage, its validity bounds, and what a search expands to.

A numeric field declares its validity bounds once, with ``param``; each
config's ``__post_init__`` enforces them with ``check_bounds`` and the API
documents them from the same field metadata (``declared_bounds``). Rules
that involve more than one field, names and lengths stay imperative.

Torch-free, so the web process builds and checks a job's config without
loading torch. Each stage module (``core.distill``, ``core.quantize``,
``core.qat``, ``core.crossover``, ``core.finetune``, ``core.validate``,
``core.search``, ``core.evolve``, ``core.training``, ``core.states``)
re-exports its own config, so either import path works; the docstrings here
describe the settings and the stage modules what is done with them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np

from core.arch import MAX_WIDTH, QNetworkArch, student_arch

MAX_STATES = 1_000_000
MAX_SEED = 2**32 - 1  # numpy's legacy seed range, which every seeded draw here accepts

BOUNDS = "bounds"  # the field metadata key ``param`` writes the bounds under

Default = TypeVar("Default")


def param(
    default: Default,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Default:
    """A config field with its default and validity bounds (pydantic's names), of the value or of each tuple item.

    ``check_bounds`` enforces them and the API documents them, so a bound is
    written only here.
    """
    bounds = {name: bound for name, bound in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if bound is not None}
    return dataclasses.field(default=default, metadata={BOUNDS: bounds})


def declared_bounds(config_class: type) -> dict[str, Mapping[str, float]]:
    """The bounds ``param`` declared for each bounded field of a config dataclass, by field name."""
    return {
        field.name: field.metadata[BOUNDS] for field in dataclasses.fields(config_class) if field.metadata.get(BOUNDS)
    }


def check_bounds(config: object) -> None:
    """Every field of ``config`` declared with ``param`` holds a number within its bounds, or None where typed so.

    A tuple field's bounds hold for each item. The ``ValueError`` names the
    field (and item), the bounds and the value, e.g. ``epochs must be an
    integer in [1, 100000], got 0``.
    """
    config_class: type = type(config)
    for rule in _bound_rules(config_class):
        value = getattr(config, rule.name)
        if value is None and rule.optional:
            continue
        if not rule.per_item:
            if not _within(value, rule.number, rule.bounds):
                raise ValueError(f"{rule.name} must be {_describe(rule)}, got {value!r}")
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise ValueError(f"{rule.name} must be a list, got {value!r}")
        for position, item in enumerate(value):
            if not (item is None and rule.item_optional) and not _within(item, rule.number, rule.bounds):
                raise ValueError(f"{rule.name}[{position}] must be {_describe(rule)}, got {item!r}")


@dataclass(frozen=True)
class _BoundRule:
    """How ``check_bounds`` reads one bounded field: its number type, and where None may stand."""

    name: str
    bounds: Mapping[str, float]
    number: type  # int or float: of the value, or of each item
    optional: bool  # the value may be None
    per_item: bool  # the value is a tuple and the bounds hold for each item
    item_optional: bool  # an item may be None


# Cached per class: resolving the type hints costs far more than checking the values (~0.5 ms a config).
@functools.cache
def _bound_rules(config_class: type) -> tuple[_BoundRule, ...]:
    hints = typing.get_type_hints(config_class)
    rules = []
    for name, bounds in declared_bounds(config_class).items():
        number, optional = _number_type(hints[name])
        per_item, item_optional = number is tuple, False
        if per_item:
            number, item_optional = _number_type(_item_type(hints[name]))
        rules.append(_BoundRule(name, bounds, number, optional, per_item, item_optional))
    return tuple(rules)


def _number_type(hint: Any) -> tuple[type, bool]:
    """(int, float or tuple; whether None is allowed) of a bounded field's type hint."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds = [arg for arg in args if arg is not type(None)]
    if len(kinds) != 1:
        raise TypeError(f"a bounded field must be a number, a tuple of numbers, or either or None; got {hint}")
    kind = typing.get_origin(kinds[0]) or kinds[0]
    if kind not in (int, float, tuple):
        raise TypeError(f"a bounded field must be a number, a tuple of numbers, or either or None; got {hint}")
    return kind, len(kinds) < len(args)


def _item_type(hint: Any) -> Any:
    """The item type of a (possibly optional) tuple hint: ``tuple[float, float]`` and ``tuple[int, ...]`` alike."""
    tuple_hint = next(arg for arg in (*typing.get_args(hint), hint) if typing.get_origin(arg) is tuple)
    item_types = {arg for arg in typing.get_args(tuple_hint) if arg is not Ellipsis}
    if len(item_types) != 1:
        raise TypeError(f"a bounded tuple field must have one item type, got {hint}")
    return item_types.pop()


def _within(value: object, number: type, bounds: Mapping[str, float]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if number is int else (int, float)):
        return False
    if not math.isfinite(value):
        return False
    return (
        ("gt" not in bounds or value > bounds["gt"])
        and ("ge" not in bounds or value >= bounds["ge"])
        and ("lt" not in bounds or value < bounds["lt"])
        and ("le" not in bounds or value <= bounds["le"])
    )


def _describe(rule: _BoundRule) -> str:
    """``an integer in [1, 100000]``, ``a number > 0 or None``: what a bounded value (or item) must be."""
    bounds, optional = rule.bounds, rule.item_optional if rule.per_item else rule.optional
    noun = "an integer" if rule.number is int else "a number"
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None
    if low and high:
        interval = f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    elif low:
        interval = f"{'>' if low[0] == '(' else '>='} {low[1]}"
    else:
        assert high, "declared_bounds lists only fields with a bound"
        interval = f"{'<' if high[0] == ')' else '<='} {high[1]}"
    return f"{noun} {interval}{' or None' if optional else ''}"


@dataclass(frozen=True)
class SyntheticStates:
    """``n_states`` rows of ``default_rng(seed).standard_normal`` (the reference's draw)."""

    n_states: int = param(1000, ge=1, le=MAX_STATES)
    seed: int = param(42, ge=0, le=MAX_SEED)

    def __post_init__(self) -> None:
        check_bounds(self)


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (``"init"``, ``"split"``, ``"eval_states"`` ...) derived from a job seed.

    Distinct purposes give independent streams, so training, validation and
    evaluation never share draws by accident.
    """
    sequence = np.random.SeedSequence([int(seed), *purpose.encode()])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


# Evaluation and quantization jobs draw their default states from this seed:
# fixed and documented, and distinct from the training seeds of the reference
# (42) and from small seeds users pick, so reports are never computed on
# training rows by accident.
EVAL_STATES_SEED = 7919


DEFAULT_EVAL_STATES = SyntheticStates(n_states=1000, seed=EVAL_STATES_SEED)


# Training jobs (distill, QAT, fine-tune, calibration) default to the
# reference's baseline buffer: 5000 states from seed 42.
DEFAULT_TRAIN_STATES = SyntheticStates(n_states=5000, seed=42)


LossFn = Literal["kl", "mse"]


Engine = Literal["fused", "autograd"]


# Validity bound of every epoch count: beyond it a request is a mistake, not a plan.
MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every training stage (reference defaults).

    ``alpha`` 1.0 means pure soft loss; ``temp_decay`` multiplies T after each
    epoch; ``max_grad_norm`` None turns clipping off; ``val_fraction`` 0 means
    no validation split (best epoch by train loss); ``early_stopping_patience``
    0 turns early stopping off. ``adam_betas`` are Adam's (beta1, beta2).
    ``ema_decay`` keeps an exponential moving average of the weights, updated
    after every step; validation, best-epoch selection and the returned
    weights then use the average (None: the raw weights). Every random draw
    (split, shuffling, dropout) comes from a generator derived from ``seed``.
    ``engine`` "fused" runs the hand-written step, "autograd" the reference
    autograd + ``torch.optim`` step (same masks and batches, equal results up
    to rounding).
    """

    epochs: int = param(10, ge=1, le=MAX_EPOCHS)
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(32, ge=1, le=MAX_STATES)
    temperature: float = param(3.0, gt=0)
    temp_decay: float = param(1.0, gt=0, le=1)
    alpha: float = param(1.0, ge=0, le=1)
    loss_fn: LossFn = "kl"
    max_grad_norm: float | None = param(1.0, gt=0)
    val_fraction: float = param(0.1, ge=0, lt=1)
    early_stopping_patience: int = param(0, ge=0, le=MAX_EPOCHS)
    seed: int = param(0, ge=0)
    adam_betas: tuple[float, float] = param((0.9, 0.999), ge=0, lt=1)
    ema_decay: float | None = param(None, gt=0, lt=1)
    engine: Engine = "fused"

    @classmethod
    def taken_from(cls, stage_config: object) -> TrainConfig:
        """The training settings of a stage's config (distill, QAT, fine-tune): every field of this class it has."""
        names = [field.name for field in dataclasses.fields(cls) if hasattr(stage_config, field.name)]
        return cls(**{name: getattr(stage_config, name) for name in names})

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.loss_fn not in ("kl", "mse"):
            raise ValueError(f"loss_fn must be 'kl' or 'mse', got {self.loss_fn!r}")
        if self.engine not in ("fused", "autograd"):
            raise ValueError(f"engine must be 'fused' or 'autograd', got {self.engine!r}")
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas must be two numbers, got {self.adam_betas!r}")
        object.__setattr__(self, "adam_betas", (float(self.adam_betas[0]), float(self.adam_betas[1])))
        if self.early_stopping_patience > 0 and self.val_fraction == 0:
            raise ValueError("early_stopping_patience needs a validation split: val_fraction is 0")


def training_param(name: str, default: Default) -> Default:
    """A training field of a stage config (distill, QAT, fine-tune): its own default, ``TrainConfig``'s bounds."""
    return param(default, **declared_bounds(TrainConfig)[name])


Granularity = Literal["per_tensor", "per_channel"]


QuantizationMode = Literal["dynamic", "static"]


MAX_CALIBRATION_BATCHES = 1_000_000


@dataclass(frozen=True)
class PTQConfig:
    """Post-training quantization settings (reference defaults).

    ``calibration_batches`` x ``calibration_batch_size`` is the number of
    leading states a static calibration reads (640 by default), at most
    ``MAX_CALIBRATION_BATCHES`` batches of at most ``MAX_STATES`` rows.
    """

    mode: QuantizationMode = "dynamic"
    granularity: Granularity = "per_tensor"
    calibration_batches: int = param(10, ge=1, le=MAX_CALIBRATION_BATCHES)
    calibration_batch_size: int = param(64, ge=1, le=MAX_STATES)

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode must be 'dynamic' or 'static', got {self.mode!r}")
        if self.granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        check_bounds(self)


StudentInit = Literal["shared", "random", "teacher"]


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings; defaults are the reference's except ``dropout_rate`` and ``init`` (see ``core.distill``).

    ``hidden_sizes`` None gives the reference student widths: every teacher
    layer halved, floor 16, never wider than the teacher's layer; a list (one
    entry per teacher layer) overrides them, a None entry keeping the halved
    width. The student keeps the teacher's depth, norm and activation.
    ``init`` "shared" starts every student of one architecture from the same
    Xavier init (``init_seed``), so students of different teachers can be
    merged; "teacher" from a least-squares subset of the teacher's units
    chosen on the training rows (needs every width <= the teacher's);
    "random" is the reference's Xavier init drawn from ``seed``. ``seed``
    drives the train/val split, shuffling, dropout and, for "random", the
    initial weights (each from its own derived seed).
    ``engine`` "autograd" trains with autograd and ``torch.optim`` (the
    reference path) instead of the fused step.
    """

    temperature: float = training_param("temperature", 3.0)
    temp_decay: float = training_param("temp_decay", 1.0)
    alpha: float = training_param("alpha", 1.0)
    lr: float = training_param("lr", 3e-3)
    epochs: int = training_param("epochs", 10)
    batch_size: int = training_param("batch_size", 32)
    max_grad_norm: float | None = training_param("max_grad_norm", 1.0)
    val_fraction: float = param(0.1, gt=0, lt=1)  # distillation always keeps a validation split
    loss_fn: Literal["kl", "mse"] = "kl"
    early_stopping_patience: int = training_param("early_stopping_patience", 0)
    seed: int = training_param("seed", 0)
    adam_betas: tuple[float, float] = training_param("adam_betas", (0.9, 0.99))
    ema_decay: float | None = training_param("ema_decay", 0.995)
    hidden_sizes: tuple[int | None, ...] | None = param(None, ge=1, le=MAX_WIDTH)
    dropout_rate: float = param(0.0, ge=0, lt=1)
    init: StudentInit = "shared"
    init_seed: int = param(0, ge=0, le=MAX_SEED)
    engine: Engine = "fused"

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.hidden_sizes is not None:
            # Lists from JSON become tuples, so the config stays hashable and frozen.
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.init not in ("shared", "random", "teacher"):
            raise ValueError(f"init must be 'shared', 'random' or 'teacher', got {self.init!r}")
        self.train_config()  # the rules between the shared training fields are checked there

    def train_config(self) -> TrainConfig:
        return TrainConfig.taken_from(self)

    def student_arch(self, teacher: QNetworkArch) -> QNetworkArch:
        return dataclasses.replace(student_arch(teacher, self.hidden_sizes), dropout_rate=self.dropout_rate)


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

    epochs: int = training_param("epochs", 5)
    lr: float = training_param("lr", 1e-3)
    batch_size: int = training_param("batch_size", 32)
    loss_fn: LossFn = "kl"
    temperature: float = training_param("temperature", 3.0)
    alpha: float = training_param("alpha", 1.0)
    max_grad_norm: float | None = training_param("max_grad_norm", 1.0)
    val_fraction: float = training_param("val_fraction", 0.1)
    seed: int = training_param("seed", 42)
    granularity: Granularity = "per_tensor"
    convert: bool = True
    engine: Engine = "fused"

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        if not isinstance(self.convert, bool):
            raise ValueError(f"convert must be a bool, got {self.convert!r}")
        self.train_config()  # the rules between the shared training fields are checked there

    def train_config(self) -> TrainConfig:
        return TrainConfig.taken_from(self)


@dataclass(frozen=True)
class QuantizationChoiceConfig:
    """Settings of ``choose_quantization``.

    ``min_agreement`` is the top-1 agreement with the float model an int8
    model must keep for PTQ to be enough. ``selection_fraction`` of the
    states is held out from calibration and training: every choice is made
    on those rows, never on the states the report quotes.
    """

    min_agreement: float = param(0.99, ge=0, le=1)
    selection_fraction: float = param(0.2, gt=0, lt=1)
    ptq: PTQConfig = PTQConfig()
    qat: QATConfig = QATConfig()

    def __post_init__(self) -> None:
        check_bounds(self)


CrossoverMode = Literal["random", "layer", "weighted", "aligned"]


CrossoverGranularity = Literal["tensor", "layer"]


AlignBy = Literal["activations", "weights"]


MAX_WEIGHT_MATCHING_ROUNDS = 100


@dataclass(frozen=True)
class CrossoverConfig:
    """How to combine two parents (defaults: the reference's ``weighted`` at 0.5).

    ``alpha`` is P(take A) in ``random`` mode and A's weight in ``weighted``
    and ``aligned``; ``layer`` ignores it. ``seed`` drives ``random`` only
    (None means fresh OS entropy, not reproducible). ``granularity`` applies to
    ``random``. ``align_by`` chooses what ``aligned`` matches units on:
    post-ReLU activation correlation over the given states, or weight
    similarity (no states needed). ``repair_layernorm`` (``aligned`` only, needs
    states) resets each blended LayerNorm's affine parameters so every hidden
    unit's mean and spread over the states are the alpha-blend of the matched
    parent units', undoing the shrinkage that averaging imperfectly matched
    units causes; layouts without LayerNorm have nothing to repair.
    """

    mode: CrossoverMode = "weighted"
    alpha: float = param(0.5, ge=0, le=1)
    seed: int | None = param(0, ge=0)
    granularity: CrossoverGranularity = "tensor"
    align_by: AlignBy = "activations"
    repair_layernorm: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("random", "layer", "weighted", "aligned"):
            raise ValueError(f"mode must be one of random, layer, weighted, aligned, got {self.mode!r}")
        check_bounds(self)
        if self.granularity not in ("tensor", "layer"):
            raise ValueError(f"granularity must be 'tensor' or 'layer', got {self.granularity!r}")
        if self.align_by not in ("activations", "weights"):
            raise ValueError(f"align_by must be 'activations' or 'weights', got {self.align_by!r}")
        if not isinstance(self.repair_layernorm, bool):
            raise ValueError(f"repair_layernorm must be a bool, got {self.repair_layernorm!r}")

    @property
    def needs_states(self) -> bool:
        return self.mode == "aligned" and (self.align_by == "activations" or self.repair_layernorm)


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


SINGLE_TEACHER_TEMPERATURE = 3.0


DUAL_TEACHER_TEMPERATURE = 0.5


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
    the reference). With two teachers, ``balance_teachers`` rescales B's
    Q-values so the target splits the parents' disagreements by weight
    (``balance_scale``). ``temperature`` None means 3.0 toward one parent (the
    reference's) and 0.5 toward two: sharper targets make the child commit to
    one parent's action where the parents disagree (on students of teachers
    0-5 the oracle agreement rose from 0.938 at T=3 and 0.956 at T=1 to 0.965;
    toward one parent T=0.5 cost 0.005 of agreement, so 3.0 stays there).
    ``adam_betas`` default to (0.9, 0.95): with the reference's beta2 of 0.999
    Adam's step shrinks with the gradient as the child nears its target, and
    ``medium`` ended with agreement with A 0.956 instead of 0.967 (students
    of teachers 0-5, three seeds). ``quantization_applied`` other than "none" trains through
    fake int8 weight quantization (a straight-through estimator), so the
    weights learn to survive rounding. ``export_int8`` None means: export an
    int8 checkpoint exactly when ``quantization_applied`` is ``ptq_dynamic`` or
    ``ptq_static`` (``qat_float`` keeps the fake-quant-trained child float).
    """

    regime: RegimeName | None = None
    epochs: int | None = training_param("epochs", None)
    lr: float | None = training_param("lr", None)
    batch_size: int | None = training_param("batch_size", None)
    temperature: float | None = training_param("temperature", None)
    temp_decay: float = training_param("temp_decay", 1.0)
    alpha: float = training_param("alpha", 1.0)
    loss_fn: LossFn = "kl"
    max_grad_norm: float | None = training_param("max_grad_norm", 1.0)
    val_fraction: float = training_param("val_fraction", 0.1)
    early_stopping_patience: int = training_param("early_stopping_patience", 0)
    seed: int = training_param("seed", 42)
    dropout_rate: float | None = param(0.0, ge=0, lt=1)
    teacher_weight_a: float = param(1.0, ge=0, le=1)
    balance_teachers: bool = True
    adam_betas: tuple[float, float] = training_param("adam_betas", (0.9, 0.95))
    quantization_applied: QuantizationApplied | None = None
    export_int8: bool | None = None
    engine: Engine = "fused"

    def __post_init__(self) -> None:
        if self.regime is not None and self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {sorted(REGIMES)} or None, got {self.regime!r}")
        base = REGIMES[self.regime] if self.regime is not None else DEFAULT_REGIME
        for name in ("epochs", "lr", "batch_size", "quantization_applied"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(base, name))
        if self.quantization_applied not in ("none", "ptq_dynamic", "ptq_static", "qat_float"):
            raise ValueError(
                "quantization_applied must be none, ptq_dynamic, ptq_static or qat_float, "
                f"got {self.quantization_applied!r}"
            )
        if self.temperature is None:
            single_teacher = self.teacher_weight_a in (0.0, 1.0)
            object.__setattr__(
                self, "temperature", SINGLE_TEACHER_TEMPERATURE if single_teacher else DUAL_TEACHER_TEMPERATURE
            )
        if self.export_int8 is None:
            object.__setattr__(self, "export_int8", self.quantization_applied in ("ptq_dynamic", "ptq_static"))
        if not isinstance(self.export_int8, bool):
            raise ValueError(f"export_int8 must be a bool or None, got {self.export_int8!r}")
        if not isinstance(self.balance_teachers, bool):
            raise ValueError(f"balance_teachers must be a bool, got {self.balance_teachers!r}")
        check_bounds(self)
        self.train_config()  # the rules between the shared training fields are checked there

    def train_config(self) -> TrainConfig:
        """The ``core.training`` settings this fine-tune runs with."""
        return TrainConfig.taken_from(self)


EVAL_CHUNK_STATES = 65_536  # bounds the activation memory of one evaluation forward


# Validity bounds: timed repeats and batches, rollout episodes and steps, and top-k lists.
MAX_REPEATS = 1_000_000
MAX_ROLLOUT_EPISODES = 100_000
MAX_ROLLOUT_STEPS = 100_000
MAX_TOP_K_VALUES = 16
MAX_TOP_K = 4096


def top_k_param() -> tuple[int, ...]:
    """The ``top_k_values`` field of a validation config: ks in [1, ``MAX_TOP_K``] (how many: ``_check_top_k``)."""
    return param((1, 2, 3), ge=1, le=MAX_TOP_K)


def _check_top_k(values: tuple[int, ...]) -> None:
    if not values or len(values) > MAX_TOP_K_VALUES:
        raise ValueError(f"top_k_values must be 1 to {MAX_TOP_K_VALUES} integers in [1, {MAX_TOP_K}], got {values!r}")


@dataclass(frozen=True)
class QuantizedValidationConfig:
    """Thresholds and benchmark settings of ``validate_quantized`` (reference defaults).

    ``gate_latency`` False reports ``max_latency_ratio`` without gating on it;
    ``throughput_batch_size`` 0 skips the throughput measurement.
    ``onnxruntime`` adds a column for both networks exported to ONNX
    (``core.export``) and run by onnxruntime: latency, throughput, file bytes
    and agreement with the service's own forward.
    """

    min_action_agreement: float = param(0.75, ge=0, le=1)
    max_mean_q_error: float = param(0.5, ge=0)
    min_cosine_similarity: float = param(0.75, ge=-1, le=1)
    max_latency_ratio: float = param(2.0, gt=0)
    gate_latency: bool = False
    top_k_values: tuple[int, ...] = top_k_param()
    latency_warmup: int = param(5, ge=0, le=MAX_REPEATS)
    latency_repeats: int = param(50, ge=1, le=MAX_REPEATS)
    throughput_batch_size: int = param(256, ge=0, le=MAX_STATES)
    throughput_warmup_batches: int = param(2, ge=0, le=MAX_REPEATS)
    throughput_timed_batches: int = param(10, ge=1, le=MAX_REPEATS)
    onnxruntime: bool = False

    def __post_init__(self) -> None:
        check_bounds(self)
        for field in ("gate_latency", "onnxruntime"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be a bool, got {getattr(self, field)!r}")
        _check_top_k(self.top_k_values)


@dataclass(frozen=True)
class DistillationValidationConfig:
    """Thresholds (reference defaults) and options of ``validate_distillation``.

    The optional thresholds (None) are only checked when set.
    ``gate_cosine`` False reports the raw-Q cosine check without letting it
    fail the report (see the report's notes); ``max_latency_ratio`` gates only
    with ``gate_latency``. Robustness slices draw from
    ``default_rng(robustness_seed)``; ``rollout_episodes`` 0 skips the rollouts.
    """

    min_action_agreement: float = param(0.85, ge=0, le=1)
    max_kl_divergence: float = param(0.5, ge=0)
    max_mse: float = param(2.0, ge=0)
    min_cosine_similarity: float = param(0.8, ge=-1, le=1)
    max_param_ratio: float = param(0.9, ge=0)
    max_mae: float | None = param(None, ge=0)
    max_latency_ratio: float | None = param(None, ge=0)
    min_robustness_action_agreement: float | None = param(None, ge=0, le=1)
    max_relative_return_drop: float | None = param(None, ge=0)
    gate_cosine: bool = False
    gate_latency: bool = False
    top_k_values: tuple[int, ...] = top_k_param()
    robustness: bool = True
    robustness_seed: int = param(42, ge=0, le=MAX_SEED)
    rollout_episodes: int = param(0, ge=0, le=MAX_ROLLOUT_EPISODES)
    rollout_max_steps: int = param(50, ge=1, le=MAX_ROLLOUT_STEPS)
    rollout_seed: int = param(0, ge=0, le=MAX_SEED)
    latency_warmup: int = param(5, ge=0, le=MAX_REPEATS)
    latency_repeats: int = param(50, ge=1, le=MAX_REPEATS)

    def __post_init__(self) -> None:
        check_bounds(self)
        for field in ("gate_cosine", "gate_latency", "robustness"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be a bool, got {getattr(self, field)!r}")
        _check_top_k(self.top_k_values)


RecombinationTarget = Literal["both", "a", "b"]


@dataclass(frozen=True)
class RecombinationValidationConfig:
    """What ``validate_recombination`` gates on, relative to what the parents allow.

    ``target`` is whose behaviour the child should keep: "both" parents, or
    parent "a" or "b" alone; None takes it from the child (the ``target`` a
    fine-tune records in its checkpoint), else "both". The gated figure is
    the target agreement as a fraction of its bound (``recombination_bound``):
    ``min(agreement with A, with B) / ((1 + AB) / 2)`` for "both", where AB
    is the parents' own agreement, and plain agreement with the one parent
    otherwise (bound 1). It must reach ``min_bound_fraction``; for "both" the
    oracle agreement (the child takes A's or B's action) must also reach
    ``min_oracle_agreement``. A crossover child that was never fine-tuned
    keeps about 0.7 of the bound and fails; children fine-tuned toward both
    parents keep 0.93-0.96 of it.

    The reference's absolute per-parent checks (agreement >= 0.70, KL <= 1,
    MSE <= 5, cosine >= 0.70 against each parent) are reported; they gate
    only with ``gate_reference_checks``, since no child can agree 0.70 with
    two parents that agree with each other on 0.2 of the states.
    ``report_only`` makes ``passed`` true whatever the checks say.
    """

    target: RecombinationTarget | None = None
    min_bound_fraction: float = param(0.85, ge=0, le=1)
    min_oracle_agreement: float = param(0.90, ge=0, le=1)
    min_action_agreement: float = param(0.70, ge=0, le=1)
    max_kl_divergence: float = param(1.0, ge=0)
    max_mse: float = param(5.0, ge=0)
    min_cosine_similarity: float = param(0.70, ge=-1, le=1)
    gate_reference_checks: bool = False
    top_k_values: tuple[int, ...] = top_k_param()
    report_only: bool = False

    def __post_init__(self) -> None:
        if self.target is not None and self.target not in ("both", "a", "b"):
            raise ValueError(f"target must be 'both', 'a', 'b' or None, got {self.target!r}")
        check_bounds(self)
        _check_top_k(self.top_k_values)
        for field in ("gate_reference_checks", "report_only"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be a bool, got {getattr(self, field)!r}")


Preset = Literal["minimal", "default", "minimal-qat", "default-qat", "custom"]
FinetuneTarget = Literal["both", "a"]
Scheduler = Literal["grid", "halving"]

CROSSOVER_MODES = ("random", "layer", "weighted", "aligned")
MAX_TRIALS = 500
MAX_GRID_VALUES = 64  # alphas or crossover seeds of a custom grid
MAX_ETA = 100
# The fixed alpha of recipes that ignore it (layer), as in the reference's ids.
UNUSED_ALPHA = 0.5
_MINIMAL_RECIPES = (
    CrossoverConfig(mode="random", alpha=0.5, seed=0),
    CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA),
    CrossoverConfig(mode="weighted", alpha=0.5),
)
_DEFAULT_RECIPES = (
    *(CrossoverConfig(mode="random", alpha=0.5, seed=seed) for seed in (0, 1, 2)),
    CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA),
    *(CrossoverConfig(mode="weighted", alpha=alpha) for alpha in (0.3, 0.5, 0.7)),
)
PRESETS: dict[str, tuple[tuple[CrossoverConfig, ...], tuple[RegimeName, ...]]] = {
    "minimal": (_MINIMAL_RECIPES, ("short", "medium", "long")),
    "default": (_DEFAULT_RECIPES, ("short", "long")),
    "minimal-qat": (_MINIMAL_RECIPES, ("short", "short_qat", "long")),
    "default-qat": (_DEFAULT_RECIPES, ("short", "long", "short_qat")),
}
PRESET_NAMES = (*PRESETS, "custom")
CUSTOM_FIELDS = ("crossover_modes", "alpha_values", "crossover_seeds", "finetune_regimes")


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how to schedule it.

    ``preset`` fixes the recipes and regimes; ``crossover_modes``,
    ``alpha_values``, ``crossover_seeds`` and ``finetune_regimes`` build the
    grid of ``preset="custom"`` and must keep their defaults otherwise.
    ``max_runs`` keeps the first N trials. ``degenerate_threshold`` (0 = off)
    flags leaderboard rows whose primary metric is below it.
    ``finetune_target`` "both" fine-tunes toward A and B at equal weights,
    "a" toward A only (the reference). ``include_parent_baseline`` ranks the
    two parents with the children. ``scheduler`` "halving" runs successive
    halving over fine-tune epochs (``halving_plan``): each rung keeps the best
    ``ceil(n / eta)`` trials of each regime and gives them ``eta`` times the
    epochs, never fewer than ``min_epochs``.
    ``seed`` is the one search seed every other seed is derived from.
    """

    preset: Preset = "default"
    crossover_modes: tuple[str, ...] = ("random", "layer", "weighted")
    alpha_values: tuple[float, ...] = param((0.3, 0.5, 0.7), ge=0, le=1)
    crossover_seeds: tuple[int, ...] = param((0, 1, 2), ge=0)
    finetune_regimes: tuple[str, ...] = ("short", "long")
    max_runs: int | None = param(None, ge=1, le=MAX_TRIALS)
    degenerate_threshold: float = param(0.0, ge=0, le=1)
    finetune_target: FinetuneTarget = "both"
    include_parent_baseline: bool = True
    scheduler: Scheduler = "grid"
    eta: int = param(3, ge=2, le=MAX_ETA)
    min_epochs: int = param(1, ge=1, le=MAX_EPOCHS)
    seed: int = param(0, ge=0)

    def __post_init__(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        for name in CUSTOM_FIELDS:
            # Lists from JSON become tuples, so the config stays hashable and frozen.
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.preset != "custom":
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            changed = [name for name in CUSTOM_FIELDS if getattr(self, name) != defaults[name]]
            if changed:
                raise ValueError(f"{', '.join(changed)} apply only to preset 'custom', got preset {self.preset!r}")
        _check_names("crossover_modes", self.crossover_modes, CROSSOVER_MODES)
        _check_names("finetune_regimes", self.finetune_regimes, tuple(REGIMES))
        check_bounds(self)
        for name in ("alpha_values", "crossover_seeds"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values) or len(values) > MAX_GRID_VALUES:
                raise ValueError(f"{name} must be 1 to {MAX_GRID_VALUES} values without duplicates, got {list(values)}")
        if self.finetune_target not in ("both", "a"):
            raise ValueError(f"finetune_target must be 'both' or 'a', got {self.finetune_target!r}")
        if not isinstance(self.include_parent_baseline, bool):
            raise ValueError(f"include_parent_baseline must be a bool, got {self.include_parent_baseline!r}")
        if self.scheduler not in ("grid", "halving"):
            raise ValueError(f"scheduler must be 'grid' or 'halving', got {self.scheduler!r}")
        size = len(_recipes(self)) * len(_regimes(self))
        if size > MAX_TRIALS and (self.max_runs is None or self.max_runs > MAX_TRIALS):
            raise ValueError(
                f"the custom grid has {size} trials, over the limit of {MAX_TRIALS}: "
                f"narrow it or set max_runs <= {MAX_TRIALS}"
            )

    @property
    def finetune_seed(self) -> int:
        """The fine-tune seed shared by every trial of this search."""
        return derive_seed(self.seed, "search/finetune")


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a crossover recipe and a fine-tune regime, at position ``index`` of the grid."""

    index: int
    trial_id: str
    crossover: CrossoverConfig
    regime: str
    finetune: FinetuneConfig

    @property
    def crossover_seed(self) -> int | None:
        """The seed the crossover draws from: only ``random`` mode draws, the others record None."""
        return _drawn_seed(self.crossover)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "trial_id": self.trial_id,
            "crossover": {**dataclasses.asdict(self.crossover), "seed": self.crossover_seed},
            "regime": self.regime,
            "finetune": dataclasses.asdict(self.finetune),
        }


def trials(config: SearchConfig) -> list[TrialSpec]:
    """The search's trials in run order (recipe-major), cut to ``config.max_runs``.

    Ids follow the reference: ``{index:03d}_{mode}_a{alpha:.2f, "." -> "p"}_s{seed|None}_{regime}``,
    e.g. ``000_random_a0p50_s0_short``, ``006_layer_a0p50_sNone_long``.
    """
    teacher_weight_a = 0.5 if config.finetune_target == "both" else 1.0
    specs: list[TrialSpec] = []
    for recipe in _recipes(config):
        for regime in _regimes(config):
            index = len(specs)
            finetune_config = FinetuneConfig(
                regime=regime, seed=config.finetune_seed, teacher_weight_a=teacher_weight_a
            )
            alpha = f"{recipe.alpha:.2f}".replace(".", "p")
            trial_id = f"{index:03d}_{recipe.mode}_a{alpha}_s{_drawn_seed(recipe)}_{regime}"
            specs.append(TrialSpec(index, trial_id, recipe, regime, finetune_config))
    return specs[: config.max_runs]


@dataclass(frozen=True)
class Rung:
    """One round of a schedule: ``n_trials`` trials run, trial ``i`` for ``epochs[i]`` fine-tune epochs.

    ``epochs`` has an entry for every trial of the search (indexed by trial
    index), whether or not it survives to this rung. In the ``final`` rung
    every trial runs its regime's full epochs.
    """

    index: int
    n_trials: int
    epochs: tuple[int, ...]
    final: bool

    def epochs_for(self, spec: TrialSpec) -> int:
        return self.epochs[spec.index]


def halving_plan(config: SearchConfig, specs: Sequence[TrialSpec]) -> list[Rung]:
    """The rungs ``specs`` run in: successive halving over fine-tune epochs, within each regime.

    ``R`` rounds come before the final one: ``floor(log_eta(n))`` for ``n``
    trials, but no more than it takes to bring every regime down to one
    trial. Rung ``r`` gives each trial ``full // eta**(R - r)`` epochs of its
    own regime's ``full`` (at least ``config.min_epochs``): a ninth, then a
    third of the budget... so every rung multiplies a trial's epochs by
    ``eta``. After each rung the best ``ceil(n_regime / eta)`` trials of each
    regime go on (``promote``); the final rung runs the survivors, at least
    one per regime, at full epochs. A rung that would give no trial more
    epochs than the previous one is skipped. With ``scheduler="grid"`` the
    plan is one final rung holding every trial, so a runner has one code path.

    Partial budgets are compared only within a regime, because regimes learn
    at different rates and an early score measures that rate, not where a
    trial ends. On the ``default`` preset with students distilled from
    independent inits (search seeds 0-4), grid's usual winner, a ``long``
    child (lr 1e-4), scored 0.32-0.35 after 2 of its 20 epochs and ended at
    0.50-0.52, while the best ``short`` child scored 0.49-0.50 after 1 of its
    5 epochs and ended at 0.48-0.50. Ranked all together, the first rung kept
    one ``long`` trial of seven, not that one, and halving missed grid's best
    score by 0.014-0.040 on 4 of 5 seeds; ranked per regime it found grid's
    winner on all 5 with 64 of grid's 175 epochs. With today's students
    (shared init) it ends within 0.006 of grid's winner on all 5 seeds at the
    same 64 epochs (``bench/bench_search_core.py``). Budget fractions (rather
    than one epoch count for all) keep each rung's epochs in proportion to the
    regime's own budget.

    A promoted trial restarts from its crossover with the new epoch count
    rather than continuing from its rung checkpoint. Restarting costs at most
    a ``1 / eta`` share more epochs and buys: a trial stays one deterministic
    function call (no optimizer state carried between jobs), a survivor's
    final result is bit-identical to the grid's for the same trial (so the
    two schedulers compare exactly), and a trial whose epochs do not grow
    from one rung to the next keeps its result instead of running again.
    """
    n_trials = len(specs)
    full = tuple(spec.finetune.train_config().epochs for spec in specs)
    if config.scheduler == "grid" or n_trials <= 1:
        return [Rung(0, n_trials, full, True)]
    regime_sizes = list(Counter(spec.regime for spec in specs).values())
    rounds, largest = 0, max(regime_sizes)
    # Past one trial per regime a round would promote every survivor: epochs for nothing.
    while config.eta ** (rounds + 1) <= n_trials and largest > 1:
        rounds, largest = rounds + 1, math.ceil(largest / config.eta)
    rungs: list[Rung] = []
    for round_index in range(rounds):
        divisor = config.eta ** (rounds - round_index)
        epochs = tuple(min(epochs, max(config.min_epochs, epochs // divisor)) for epochs in full)
        if epochs == full:
            break
        if rungs and epochs == rungs[-1].epochs:
            continue
        rungs.append(Rung(len(rungs), sum(regime_sizes), epochs, False))
        regime_sizes = [math.ceil(size / config.eta) for size in regime_sizes]
    rungs.append(Rung(len(rungs), sum(regime_sizes), full, True))
    return rungs


def _recipes(config: SearchConfig) -> tuple[CrossoverConfig, ...]:
    if config.preset != "custom":
        return PRESETS[config.preset][0]
    recipes: list[CrossoverConfig] = []
    for mode in config.crossover_modes:
        if mode == "random":
            recipes.extend(
                CrossoverConfig(mode="random", alpha=alpha, seed=seed)
                for seed in config.crossover_seeds
                for alpha in config.alpha_values
            )
        elif mode == "layer":
            recipes.append(CrossoverConfig(mode="layer", alpha=UNUSED_ALPHA))
        else:
            recipes.extend(
                CrossoverConfig(mode=cast(CrossoverMode, mode), alpha=alpha) for alpha in config.alpha_values
            )
    return tuple(recipes)


def _drawn_seed(recipe: CrossoverConfig) -> int | None:
    # Layer, weighted and aligned recipes keep CrossoverConfig's fixed default
    # seed, which they never draw from; ids and manifests show None for them.
    return recipe.seed if recipe.mode == "random" else None


def _regimes(config: SearchConfig) -> tuple[RegimeName, ...]:
    # Custom names were checked against REGIMES when the config was built.
    return (
        PRESETS[config.preset][1]
        if config.preset != "custom"
        else cast(tuple[RegimeName, ...], config.finetune_regimes)
    )


def _check_names(field: str, names: tuple[str, ...], valid: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in valid]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"{field} must be distinct names from {', '.join(valid)}, got {list(names)}")


Fitness = Literal["min_agreement", "mean_agreement", "mdp_return"]
FITNESSES: tuple[str, ...] = ("min_agreement", "mean_agreement", "mdp_return")
FITNESS_DEFINITIONS = {
    "min_agreement": "min over targets of top-1 agreement (the search's primary metric for two targets)",
    "mean_agreement": "mean over targets of top-1 agreement",
    "mdp_return": "mean undiscounted return of greedy episodes on the seeded linear MDP (core.mdp)",
}
# Validity bounds: what the algorithm can mean, not what a deployment affords
# (operating caps belong to the service's settings).
MIN_FOUNDERS, MAX_FOUNDERS = 2, 64
MAX_POPULATION = 64
MAX_GENERATIONS = 100
MAX_FINETUNE_EPOCHS = 1000
MAX_MUTATION_SIGMA = 1.0
MAX_MDP_EPISODES = 10_000
MAX_MDP_STEPS = 10_000
# The fine-tune loss takes one target, or two with balanced targets (core.finetune).
MAX_TARGETS = 2
FLOAT_REGIMES = tuple(name for name, regime in REGIMES.items() if regime.quantization_applied == "none")


@dataclass(frozen=True)
class EvolveConfig:
    """How to breed: population, selection, operators, fine-tune and fitness.

    ``population_size`` members per generation after the founders;
    ``generations`` generations of children; the best ``elite`` members of a
    generation (at least one, so the best selection fitness never falls) go on
    unchanged. Each parent is the best of ``tournament_size`` members drawn
    without replacement (parent B never the same member as A). Each child's
    crossover mode is drawn from ``crossover_modes`` and its alpha (A's
    weight, or P(take A) for ``random``) from ``alpha_values``. Mutation adds
    ``N(0, (sigma * rms(t))**2)`` to every tensor ``t`` of the crossed child,
    with ``sigma = mutation_sigma * mutation_decay ** (generation - 1)`` (0
    turns it off): relative to each tensor's scale, so one sigma perturbs
    every layer alike. The child is then fine-tuned toward the targets with
    ``finetune_regime`` (``finetune_epochs`` overrides its epochs): the
    balanced dual-teacher loss toward two targets, the single-teacher loss
    toward one; only the float regimes (children are scored as float). The
    default ``lr_high`` (5 epochs at lr 5e-3) suits children whose parents
    already sit near the targets: on students of teachers (0, 1), (2, 3),
    (4, 5) over six seeds the winner's min agreement on the evaluation
    states averaged 0.573 against 0.569 with ``medium``, for half the epochs
    (``bench/bench_evolve_core.py``). ``fitness`` is defined in the module
    docstring; ``mdp_episodes`` greedy episodes of ``mdp_max_steps`` steps on
    the MDP of ``mdp_seed`` score ``mdp_return``, for selection and again,
    from other start states, for the report. ``seed`` is the one seed every
    draw derives from.
    """

    population_size: int = param(8, ge=2, le=MAX_POPULATION)
    generations: int = param(5, ge=1, le=MAX_GENERATIONS)
    elite: int = param(2, ge=1, le=MAX_POPULATION - 1)
    tournament_size: int = param(3, ge=1, le=MAX_POPULATION)
    crossover_modes: tuple[str, ...] = ("aligned", "weighted")
    alpha_values: tuple[float, ...] = param((0.3, 0.5, 0.7), ge=0, le=1)
    mutation_sigma: float = param(0.01, ge=0, le=MAX_MUTATION_SIGMA)
    mutation_decay: float = param(0.5, gt=0, le=1)
    finetune_regime: str = "lr_high"
    finetune_epochs: int | None = param(None, ge=1, le=MAX_FINETUNE_EPOCHS)
    fitness: Fitness = "min_agreement"
    mdp_seed: int = param(0, ge=0, le=MAX_SEED)
    mdp_episodes: int = param(64, ge=1, le=MAX_MDP_EPISODES)
    mdp_max_steps: int = param(50, ge=1, le=MAX_MDP_STEPS)
    seed: int = param(0, ge=0, le=MAX_SEED)

    def __post_init__(self) -> None:
        # Lists from JSON become tuples, so the config stays hashable and frozen.
        object.__setattr__(self, "crossover_modes", tuple(self.crossover_modes))
        object.__setattr__(self, "alpha_values", tuple(self.alpha_values))
        check_bounds(self)
        # The population bounds the elite and the tournament: elite below it, tournament within it.
        if self.elite > self.population_size - 1:
            raise ValueError(f"elite must be an integer in [1, {self.population_size - 1}], got {self.elite!r}")
        if self.tournament_size > self.population_size:
            raise ValueError(
                f"tournament_size must be an integer in [1, {self.population_size}], got {self.tournament_size!r}"
            )
        unknown = [mode for mode in self.crossover_modes if mode not in CROSSOVER_MODES]
        if unknown or not self.crossover_modes or len(set(self.crossover_modes)) != len(self.crossover_modes):
            raise ValueError(
                f"crossover_modes must be distinct names from {', '.join(CROSSOVER_MODES)}, "
                f"got {list(self.crossover_modes)}"
            )
        if not self.alpha_values or len(set(self.alpha_values)) != len(self.alpha_values):
            raise ValueError(f"alpha_values must be distinct numbers, got {list(self.alpha_values)}")
        if self.finetune_regime not in FLOAT_REGIMES:
            raise ValueError(f"finetune_regime must be one of {', '.join(FLOAT_REGIMES)}, got {self.finetune_regime!r}")
        if self.fitness not in FITNESSES:
            raise ValueError(f"fitness must be one of {', '.join(FITNESSES)}, got {self.fitness!r}")

    @property
    def epochs_per_child(self) -> int:
        return self.finetune_epochs if self.finetune_epochs is not None else REGIMES[self.finetune_regime].epochs

    def mutation_sigma_at(self, generation: int) -> float:
        """The mutation sigma of ``generation``'s children (generation 1 uses ``mutation_sigma``)."""
        return self.mutation_sigma * self.mutation_decay ** (generation - 1)

    def finetune_config(self, n_targets: int, seed: int) -> FinetuneConfig:
        """The fine-tune of one child: toward one target, or both of two at equal weights."""
        return FinetuneConfig(
            regime=cast(RegimeName, self.finetune_regime),
            epochs=self.finetune_epochs,
            seed=seed,
            teacher_weight_a=1.0 if n_targets == 1 else 0.5,
        )
