"""Q-networks with the reference module layout.

Both the parent ("teacher") and the student are one ``nn.Sequential`` named
``network``::

    0 Linear(in, h)  1 LayerNorm(h)  2 ReLU  3 Dropout
    4 Linear(h, h)   5 LayerNorm(h)  6 ReLU  7 Dropout
    8 Linear(h, out)

so a state dict holds exactly ten float tensors, ``network.{0,1,4,5,8}.{weight,bias}``,
and files saved by the reference implementation load unchanged. A student is
the same module with ``hidden = max(16, parent_hidden // 2)`` and dropout 0.05.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

LINEAR_INDICES = (0, 4, 8)
LAYERNORM_INDICES = (1, 5)
LAYERNORM_EPS = 1e-5
PARENT_DROPOUT = 0.1
STUDENT_DROPOUT = 0.05
MIN_STUDENT_HIDDEN = 16


def state_dict_keys() -> tuple[str, ...]:
    """The ten state-dict keys, in module order."""
    return tuple(
        f"network.{index}.{name}"
        for index in sorted(LINEAR_INDICES + LAYERNORM_INDICES)
        for name in ("weight", "bias")
    )


STATE_DICT_KEYS = state_dict_keys()


@dataclass(frozen=True)
class QNetworkArch:
    """Architecture of a Q-network; field names follow the reference constructor."""

    input_dim: int = 8
    hidden_size: int = 64
    output_dim: int = 4
    dropout_rate: float = PARENT_DROPOUT

    def __post_init__(self) -> None:
        for field in ("input_dim", "hidden_size", "output_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
                raise ValueError(f"{field} must be an integer in [1, 4096], got {value!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")

    @property
    def param_count(self) -> int:
        """``h^2 + h(in + out + 6) + out``: 5,252 for 8-64-4."""
        h = self.hidden_size
        return h * h + h * (self.input_dim + self.output_dim + 6) + self.output_dim

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every state-dict tensor."""
        h, i, o = self.hidden_size, self.input_dim, self.output_dim
        return {
            "network.0.weight": (h, i),
            "network.0.bias": (h,),
            "network.1.weight": (h,),
            "network.1.bias": (h,),
            "network.4.weight": (h, h),
            "network.4.bias": (h,),
            "network.5.weight": (h,),
            "network.5.bias": (h,),
            "network.8.weight": (o, h),
            "network.8.bias": (o,),
        }

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def same_shapes(self, other: QNetworkArch) -> bool:
        """Equal tensor shapes (dropout does not change the parameters)."""
        return (self.input_dim, self.hidden_size, self.output_dim) == (
            other.input_dim,
            other.hidden_size,
            other.output_dim,
        )

    def describe(self) -> str:
        return f"{self.input_dim}-{self.hidden_size}-{self.hidden_size}-{self.output_dim}"


def student_arch(parent: QNetworkArch, hidden_size: int | None = None) -> QNetworkArch:
    """The reference student of ``parent``: half its hidden width (floor 16), dropout 0.05."""
    hidden = hidden_size if hidden_size is not None else max(MIN_STUDENT_HIDDEN, parent.hidden_size // 2)
    return QNetworkArch(parent.input_dim, hidden, parent.output_dim, STUDENT_DROPOUT)


class QNetwork(nn.Module):
    """Parent or student Q-network (see the module docstring for the layout).

    ``forward`` takes ``(batch, input_dim)`` or ``(input_dim,)`` float32 and
    returns raw Q-values of shape ``(batch, output_dim)`` or ``(output_dim,)``.
    It never changes train/eval mode.
    """

    def __init__(self, arch: QNetworkArch) -> None:
        super().__init__()
        self.arch = arch
        h = arch.hidden_size
        # nn.Linear draws its default init from the global RNG; fork it so
        # building a network never shifts anyone else's random stream.
        with torch.random.fork_rng(devices=[]):
            self.network = self._layers(arch, h)

    @staticmethod
    def _layers(arch: QNetworkArch, h: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(arch.input_dim, h),
            nn.LayerNorm(h, eps=LAYERNORM_EPS),
            nn.ReLU(),
            nn.Dropout(arch.dropout_rate),
            nn.Linear(h, h),
            nn.LayerNorm(h, eps=LAYERNORM_EPS),
            nn.ReLU(),
            nn.Dropout(arch.dropout_rate),
            nn.Linear(h, arch.output_dim),
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.dim() == 1:
            return self.network(states.unsqueeze(0)).squeeze(0)
        return self.network(states)


def init_network(arch: QNetworkArch, seed: int) -> QNetwork:
    """A freshly initialised network, bit-identical for equal ``(arch, seed)``.

    Linear weights are Xavier-uniform and biases zero; LayerNorm weight 1, bias 0
    (the reference initialisation), drawn from a private generator.
    """
    generator = torch.Generator().manual_seed(int(seed))
    model = QNetwork(arch)
    with torch.no_grad():
        for index in LINEAR_INDICES:
            layer = model.network[index]
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            layer.bias.zero_()
    return model


def infer_arch(state_dict: Mapping[str, torch.Tensor], dropout_rate: float | None = None) -> QNetworkArch:
    """Infer the architecture from tensor shapes and check every key and shape.

    Raises ``ValueError`` naming the missing, unexpected or mis-shaped keys.
    When ``dropout_rate`` is None it is guessed: a width that is the reference
    student of some parent gets the student dropout only if asked for, so the
    parent rate is the default.
    """
    missing = [key for key in STATE_DICT_KEYS if key not in state_dict]
    unexpected = sorted(set(state_dict) - set(STATE_DICT_KEYS))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}")
        raise ValueError("not a Q-network state dict: " + "; ".join(parts))
    first = state_dict["network.0.weight"]
    last = state_dict["network.8.weight"]
    if first.dim() != 2 or last.dim() != 2:
        raise ValueError("network.0.weight and network.8.weight must be 2-D")
    arch = QNetworkArch(
        input_dim=int(first.shape[1]),
        hidden_size=int(first.shape[0]),
        output_dim=int(last.shape[0]),
        dropout_rate=PARENT_DROPOUT if dropout_rate is None else dropout_rate,
    )
    check_shapes(state_dict, arch)
    return arch


def check_shapes(state_dict: Mapping[str, torch.Tensor], arch: QNetworkArch) -> None:
    """Raise ``ValueError`` naming every tensor whose shape does not fit ``arch``."""
    wrong = [
        f"{key}: expected {list(shape)}, got {list(state_dict[key].shape)}"
        for key, shape in arch.param_shapes().items()
        if tuple(state_dict[key].shape) != shape
    ]
    if wrong:
        raise ValueError(f"shapes do not fit {arch.describe()}: " + "; ".join(wrong))


def network_from_state_dict(state_dict: Mapping[str, torch.Tensor], arch: QNetworkArch | None = None) -> QNetwork:
    """Build a ``QNetwork`` (eval mode) holding float32 copies of ``state_dict``."""
    arch = arch or infer_arch(state_dict)
    model = QNetwork(arch)
    model.load_state_dict({key: state_dict[key].to(torch.float32) for key in STATE_DICT_KEYS}, strict=True)
    return model.eval()


def functional_forward(params: Mapping[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward straight from tensors: three ``addmm``, two ``layer_norm``.

    The same function as ``QNetwork.eval()`` without per-module overhead
    (about 2x faster for a single sample). ``states`` is ``(batch, input_dim)``.
    """
    hidden = torch.addmm(params["network.0.bias"], states, params["network.0.weight"].t())
    hidden = F.layer_norm(hidden, hidden.shape[-1:], params["network.1.weight"], params["network.1.bias"], LAYERNORM_EPS)
    hidden = torch.relu_(hidden)
    hidden = torch.addmm(params["network.4.bias"], hidden, params["network.4.weight"].t())
    hidden = F.layer_norm(hidden, hidden.shape[-1:], params["network.5.weight"], params["network.5.bias"], LAYERNORM_EPS)
    hidden = torch.relu_(hidden)
    return torch.addmm(params["network.8.bias"], hidden, params["network.8.weight"].t())


def param_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Sum of ``numel * element_size`` over the tensors (the stored parameter bytes)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
