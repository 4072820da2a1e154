"""The architecture of a Q-network as data: the family's fields, their bounds, and the layer list.

Torch-free, so the web process validates and describes networks without
loading torch; ``core.networks`` builds modules and forwards from these
descriptions (its module docstring describes the layouts).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass
from functools import cached_property
from typing import Any, Literal, TypeVar, cast

Norm = Literal["layernorm", "none"]
Activation = Literal["relu", "tanh", "gelu", "silu", "elu", "leaky_relu"]
NORMS: tuple[str, ...] = ("layernorm", "none")
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "gelu", "silu", "elu", "leaky_relu")
LAYERNORM_EPS = 1e-5
LEAKY_RELU_SLOPE = 0.01  # torch's default, as nn.LeakyReLU() builds
ELU_ALPHA = 1.0
PARENT_DROPOUT = 0.1
STUDENT_DROPOUT = 0.05
MIN_STUDENT_HIDDEN = 16
MAX_HIDDEN_LAYERS = 8
MAX_WIDTH = 4096
Value = TypeVar("Value")
ARCH_FIELDS = ("input_dim", "hidden_sizes", "output_dim", "norm", "activation", "dropout_rate")


@dataclass(frozen=True)
class Block:
    """One Linear and what follows it, as the layer list names it.

    ``linear`` and ``norm`` are state-dict prefixes (``"network.0"``,
    ``"network.1"``; ``norm`` None without LayerNorm). ``hidden`` blocks are
    followed by LayerNorm (if any) and the activation; the last block is the
    output layer. Its weight is ``(out_features, in_features)``.
    """

    position: int
    linear: str
    norm: str | None
    in_features: int
    out_features: int
    hidden: bool

    @property
    def weight(self) -> str:
        return f"{self.linear}.weight"

    @property
    def bias(self) -> str:
        return f"{self.linear}.bias"

    @property
    def norm_weight(self) -> str:
        return f"{self._norm_prefix()}.weight"

    @property
    def norm_bias(self) -> str:
        return f"{self._norm_prefix()}.bias"

    def _norm_prefix(self) -> str:
        if self.norm is None:
            raise ValueError(f"block {self.position} has no LayerNorm")
        return self.norm

    def tensor_keys(self) -> tuple[str, ...]:
        norm = (f"{self.norm}.weight", f"{self.norm}.bias") if self.norm else ()
        return (self.weight, self.bias, *norm)


@dataclass(frozen=True)
class QNetworkArch:
    """Architecture of a Q-network (defaults: the reference layout 8-64-64-4).

    ``hidden_sizes`` holds 1-8 widths in [1, 4096]; ``hidden_size=h`` is
    shorthand for ``hidden_sizes=(h, h)``. ``norm`` is "layernorm" or "none";
    ``activation`` one of relu, tanh, gelu (exact), silu, elu (alpha 1),
    leaky_relu (slope 0.01); ``dropout_rate`` in [0, 1) applies after every
    activation in training. ``ValueError`` names the field and value that are
    outside the family.
    """

    input_dim: int = 8
    hidden_sizes: tuple[int, ...] = (64, 64)
    output_dim: int = 4
    norm: Norm = "layernorm"
    activation: Activation = "relu"
    dropout_rate: float = PARENT_DROPOUT
    hidden_size: InitVar[int | None] = None

    def __post_init__(self, hidden_size: int | None) -> None:
        if hidden_size is not None:
            _check_width("hidden_size", hidden_size)
            object.__setattr__(self, "hidden_sizes", (hidden_size, hidden_size))
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(self.hidden_sizes, Sequence):
            raise ValueError(f"hidden_sizes must be a list of 1-{MAX_HIDDEN_LAYERS} widths, got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if not 1 <= len(self.hidden_sizes) <= MAX_HIDDEN_LAYERS:
            raise ValueError(
                f"hidden_sizes must hold 1 to {MAX_HIDDEN_LAYERS} layers, "
                f"got {len(self.hidden_sizes)}: {list(self.hidden_sizes)}"
            )
        for position, width in enumerate(self.hidden_sizes):
            _check_width(f"hidden_sizes[{position}]", width)
        _check_width("input_dim", self.input_dim)
        _check_width("output_dim", self.output_dim)
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not supported; use one of {', '.join(NORMS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}")
        rate = self.dropout_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0.0 <= rate < 1.0
        ):
            raise ValueError(f"dropout_rate must be in [0, 1), got {rate!r}")
        object.__setattr__(self, "dropout_rate", float(rate))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QNetworkArch:
        """From JSON (the API's form or a stored record); ``hidden_size`` is shorthand for two equal layers.

        Unknown keys are an error naming them, so a typo never falls back to a default.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"arch must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {*ARCH_FIELDS, "hidden_size"})
        if unknown:
            raise ValueError(f"unsupported arch fields {unknown}; the family is described by {', '.join(ARCH_FIELDS)}")
        values = dict(data)
        if "hidden_size" in values:
            if "hidden_sizes" in values:
                raise ValueError("give hidden_sizes or hidden_size (two equal layers), not both")
            width = values.pop("hidden_size")
            _check_width("hidden_size", width)
            values["hidden_sizes"] = (width, width)
        return cls(**values)

    @classmethod
    def reference(
        cls, input_dim: int = 8, hidden_size: int = 64, output_dim: int = 4, dropout_rate: float = PARENT_DROPOUT
    ) -> QNetworkArch:
        """The reference layout: two equal hidden layers, LayerNorm, ReLU."""
        return cls(input_dim, (hidden_size, hidden_size), output_dim, "layernorm", "relu", dropout_rate)

    def to_dict(self) -> dict[str, Any]:
        return {
            field: list(self.hidden_sizes) if field == "hidden_sizes" else getattr(self, field) for field in ARCH_FIELDS
        }

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.hidden_sizes)

    @property
    def has_dropout_slot(self) -> bool:
        """Whether each hidden layer builds a Dropout module (see ``core.networks``)."""
        return self.norm == "layernorm" or self.dropout_rate > 0

    @cached_property
    def blocks(self) -> tuple[Block, ...]:
        """The layer list: every hidden block, then the output block."""
        per_layer = 2 + (self.norm == "layernorm") + self.has_dropout_slot
        widths = (self.input_dim, *self.hidden_sizes, self.output_dim)
        blocks = []
        for position in range(self.depth + 1):
            hidden = position < self.depth
            index = position * per_layer
            norm = f"network.{index + 1}" if hidden and self.norm == "layernorm" else None
            blocks.append(Block(position, f"network.{index}", norm, widths[position], widths[position + 1], hidden))
        return tuple(blocks)

    @property
    def hidden_blocks(self) -> tuple[Block, ...]:
        return self.blocks[:-1]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every state-dict tensor, in module order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for block in self.blocks:
            shapes[block.weight] = (block.out_features, block.in_features)
            shapes[block.bias] = (block.out_features,)
            if block.norm:
                shapes[block.norm_weight] = (block.out_features,)
                shapes[block.norm_bias] = (block.out_features,)
        return shapes

    def state_dict_keys(self) -> tuple[str, ...]:
        return tuple(self.param_shapes())

    @property
    def linear_weight_keys(self) -> tuple[str, ...]:
        return tuple(block.weight for block in self.blocks)

    @property
    def param_count(self) -> int:
        """Number of parameters: 5,252 for the reference 8-64-64-4."""
        return sum(math.prod(shape) for shape in self.param_shapes().values())

    def same_shapes(self, other: QNetworkArch) -> bool:
        """Equal layer lists and tensor shapes (activation and dropout do not change the parameters)."""
        return (self.input_dim, self.hidden_sizes, self.output_dim, self.norm) == (
            other.input_dim,
            other.hidden_sizes,
            other.output_dim,
            other.norm,
        )

    def same_function_family(self, other: QNetworkArch) -> bool:
        """Equal shapes and activation: two such networks compute comparable functions unit by unit."""
        return self.same_shapes(other) and self.activation == other.activation

    def describe(self) -> str:
        """E.g. ``8-64-64-4 layernorm relu``."""
        dims = "-".join(str(width) for width in (self.input_dim, *self.hidden_sizes, self.output_dim))
        return f"{dims} {self.norm} {self.activation}"

    def difference(self, other: QNetworkArch) -> str:
        """What differs from ``other``, e.g. ``hidden_sizes [64, 64] vs [32, 32]``."""
        parts = [
            f"{field} {_show(getattr(self, field))} vs {_show(getattr(other, field))}"
            for field in ("input_dim", "hidden_sizes", "output_dim", "norm", "activation")
            if getattr(self, field) != getattr(other, field)
        ]
        return ", ".join(parts) or "nothing"


def _show(value: object) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _check_width(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WIDTH:
        raise ValueError(f"{name} must be an integer in [1, {MAX_WIDTH}], got {value!r}")


def check_param_cap(arch: QNetworkArch, max_params: int) -> None:
    """``ValueError`` when ``arch`` has more than ``max_params`` parameters."""
    if arch.param_count > max_params:
        raise ValueError(f"{arch.describe()} has {arch.param_count:,} parameters, over the limit of {max_params:,}")


def student_arch(parent: QNetworkArch, hidden_sizes: Sequence[int | None] | None = None) -> QNetworkArch:
    """The student of ``parent``: every hidden width halved (floor 16, never wider than the parent's layer).

    Its dropout rate is 0.05.

    ``hidden_sizes`` overrides widths per layer (None entries keep the halved
    width); it must have one entry per parent hidden layer.
    """
    widths = [min(width, max(MIN_STUDENT_HIDDEN, width // 2)) for width in parent.hidden_sizes]
    if hidden_sizes is not None:
        if len(hidden_sizes) != parent.depth:
            raise ValueError(
                f"student hidden_sizes needs {parent.depth} entries (one per teacher layer), got {list(hidden_sizes)}"
            )
        widths = [width if override is None else override for width, override in zip(widths, hidden_sizes, strict=True)]
    return dataclasses.replace(parent, hidden_sizes=tuple(widths), dropout_rate=STUDENT_DROPOUT)


def infer_arch(
    state_dict: Mapping[str, Any],
    *,
    prefix: str = "network.",
    activation: str = "relu",
    dropout_rate: float | None = None,
) -> QNetworkArch:
    """Infer the architecture from keys and shapes (values only need ``.shape``), and check both.

    Keys are ``{prefix}{index}.{weight|bias}``. 2-D weights are Linear layers,
    1-D weights right after a Linear are LayerNorm; the module indices must be
    those ``arch`` builds (with a Dropout slot when the index gaps show one,
    whose rate is then ``dropout_rate`` or the reference's 0.1). The
    activation cannot be seen in tensors: it is ``activation``. Raises
    ``ValueError`` naming the unexpected keys, a mixed norm, or mis-shaped tensors.
    """
    modules: dict[int, dict[str, tuple[int, ...]]] = {}
    unexpected = []
    for key, value in state_dict.items():
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        parts = rest.split(".") if rest is not None else []
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in ("weight", "bias"):
            unexpected.append(key)
            continue
        modules.setdefault(int(parts[0]), {})[parts[1]] = tuple(value.shape)
    if unexpected:
        raise ValueError(
            f"not a Q-network state dict: unexpected keys {sorted(unexpected)[:10]} "
            f"(expected {prefix}<index>.weight and .bias)"
        )
    if not modules:
        raise ValueError(f"not a Q-network state dict: no {prefix}<index>.weight keys")
    incomplete = [f"{prefix}{index}" for index, names in sorted(modules.items()) if set(names) != {"weight", "bias"}]
    if incomplete:
        raise ValueError(f"not a Q-network state dict: {incomplete} need both weight and bias")
    indices = sorted(modules)
    kinds = []
    for index in indices:
        dims = len(modules[index]["weight"])
        if dims == 2:
            kinds.append("linear")
        elif dims == 1:
            kinds.append("norm")
        else:
            raise ValueError(
                f"{prefix}{index}.weight has {dims} dimensions: "
                "only Linear (2-D) and LayerNorm (1-D) layers are supported"
            )
    linears = [index for index, kind in zip(indices, kinds, strict=True) if kind == "linear"]
    norms = [index for index, kind in zip(indices, kinds, strict=True) if kind == "norm"]
    if len(linears) < 2:
        raise ValueError(
            f"a Q-network needs at least one hidden layer (two Linear layers), found Linear modules at {linears}"
        )
    if len(linears) - 1 > MAX_HIDDEN_LAYERS:
        raise ValueError(f"{len(linears) - 1} hidden layers: at most {MAX_HIDDEN_LAYERS} are supported")
    hidden_linears = linears[:-1]
    if norms and norms != [index + 1 for index in hidden_linears]:
        raise ValueError(
            f"LayerNorm modules at {norms} do not follow every hidden Linear at {hidden_linears}: "
            "a norm on some layers only, or after the output, is not supported"
        )
    norm: Norm = "layernorm" if norms else "none"
    step = linears[1] - linears[0]
    base = 2 + (norm == "layernorm")
    if step not in (base, base + 1):
        raise ValueError(
            f"module indices {indices} do not follow Linear, [LayerNorm], activation, [Dropout] per hidden layer"
        )
    has_dropout = step == base + 1
    if has_dropout:
        rate = PARENT_DROPOUT if dropout_rate is None else dropout_rate
    else:
        rate = 0.0 if dropout_rate is None else dropout_rate
    first = modules[linears[0]]["weight"]
    arch = QNetworkArch(
        input_dim=int(first[1]),
        hidden_sizes=tuple(int(modules[index]["weight"][0]) for index in hidden_linears),
        output_dim=int(modules[linears[-1]]["weight"][0]),
        norm=norm,
        activation=cast(Activation, activation),  # checked by QNetworkArch
        dropout_rate=rate,
    )
    expected = [f"{prefix}{key.removeprefix('network.')}" for key in arch.state_dict_keys()]
    if sorted(expected) != sorted(state_dict):
        found = sorted({int(key[len(prefix) :].split(".")[0]) for key in state_dict})
        wanted = sorted({int(key[len(prefix) :].split(".")[0]) for key in expected})
        raise ValueError(
            f"module indices {found} do not match the layout {arch.describe()} builds ({wanted}); "
            "the supported layouts are Linear, [LayerNorm], activation, [Dropout] per hidden layer"
        )
    check_shapes({key.replace(prefix, "network.", 1): value for key, value in state_dict.items()}, arch)
    return arch


def rekey(params: Mapping[str, Value], source: QNetworkArch, target: QNetworkArch) -> dict[str, Value]:
    """``params`` of ``source`` under ``target``'s keys, block by block (the layouts differ only in module indices)."""
    renamed: dict[str, Value] = {}
    for block_from, block_to in zip(source.blocks, target.blocks, strict=True):
        for key_from, key_to in zip(block_from.tensor_keys(), block_to.tensor_keys(), strict=True):
            renamed[key_to] = params[key_from]
    return renamed


def check_shapes(state_dict: Mapping[str, Any], arch: QNetworkArch) -> None:
    """Raise ``ValueError`` naming every missing or mis-shaped tensor for ``arch``."""
    shapes = arch.param_shapes()
    missing = [key for key in shapes if key not in state_dict]
    if missing:
        raise ValueError(f"tensors missing for {arch.describe()}: {missing}")
    wrong = [
        f"{key}: expected {list(shape)}, got {list(state_dict[key].shape)}"
        for key, shape in shapes.items()
        if tuple(state_dict[key].shape) != shape
    ]
    if wrong:
        raise ValueError(f"shapes do not fit {arch.describe()}: " + "; ".join(wrong))
