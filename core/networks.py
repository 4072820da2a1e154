"""Q-networks: one declarative description of an MLP family, its layer list, and one forward.

An architecture is ``QNetworkArch(input_dim, hidden_sizes, output_dim, norm,
activation, dropout_rate)``: 1-8 hidden layers of any widths, each a Linear,
then LayerNorm (``norm="layernorm"``) or nothing (``"none"``), then the
activation, then Dropout; the output layer is a Linear. No user code ever runs:
the description is data.

The module is one ``nn.Sequential`` named ``network`` whose indices are the
positions of the modules a layout builds, so state-dict keys are
``network.{i}.weight`` / ``.bias`` for every Linear and LayerNorm:

- the reference layout (the default: 8-64-64-4, LayerNorm, ReLU, dropout 0.1)
  builds ``Linear, LayerNorm, ReLU, Dropout`` per hidden layer, giving the keys
  ``network.{0,1,4,5,8}`` of the reference's files;
- a layout without norm and without dropout builds ``Linear, activation`` per
  hidden layer: ``network.{0,2,4}`` as CleanRL's ``nn.Sequential`` and
  Stable-Baselines3's ``q_net``.

A Dropout module sits in a layer's slot whenever the layout has LayerNorm (the
reference family keeps it even at rate 0, so a student trained without dropout
still loads into the reference classes) or a dropout rate above 0.

Everything else walks ``arch.blocks`` (one Linear, its LayerNorm if any, and
whether an activation follows) instead of naming keys, and every forward in the
service is ``make_forward``: training's validation passes, validators, int8
serving and distillation's teacher pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.arch import (  # noqa: F401 (re-exported: the architecture's description lives in core.arch)
    ACTIVATIONS,
    ARCH_FIELDS,
    ELU_ALPHA,
    LAYERNORM_EPS,
    LEAKY_RELU_SLOPE,
    MAX_HIDDEN_LAYERS,
    MAX_WIDTH,
    MIN_STUDENT_HIDDEN,
    NORMS,
    PARENT_DROPOUT,
    STUDENT_DROPOUT,
    Activation,
    Block,
    Norm,
    QNetworkArch,
    check_param_cap,
    check_shapes,
    infer_arch,
    rekey,
    student_arch,
)
from core.checkpoint_file import init_arrays

_ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": lambda: nn.ELU(alpha=ELU_ALPHA),
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
}
# In-place where torch has it: the input is always a fresh intermediate.
_ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "gelu": F.gelu,
    "silu": lambda x: F.silu(x, inplace=True),
    "elu": lambda x: F.elu(x, ELU_ALPHA, inplace=True),
    "leaky_relu": lambda x: F.leaky_relu(x, LEAKY_RELU_SLOPE, inplace=True),
}


class QNetwork(nn.Module):
    """The ``nn.Module`` of an architecture (see the module docstring for the layout).

    ``forward`` takes ``(batch, input_dim)`` or ``(input_dim,)`` float32 and
    returns raw Q-values ``(batch, output_dim)`` or ``(output_dim,)``. It never
    changes train/eval mode.
    """

    def __init__(self, arch: QNetworkArch) -> None:
        super().__init__()
        self.arch = arch
        # nn.Linear draws its default init from the global RNG; fork it so
        # building a network never shifts anyone else's random stream.
        with torch.random.fork_rng(devices=[]):
            self.network = build_sequential(arch)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.dim() == 1:
            return self.network(states.unsqueeze(0)).squeeze(0)
        return self.network(states)


def build_sequential(arch: QNetworkArch) -> nn.Sequential:
    """The ``nn.Sequential`` whose indices give the state-dict keys of ``arch``."""
    modules: list[nn.Module] = []
    for block in arch.blocks:
        modules.append(nn.Linear(block.in_features, block.out_features))
        if block.hidden:
            if block.norm:
                modules.append(nn.LayerNorm(block.out_features, eps=LAYERNORM_EPS))
            modules.append(_ACTIVATION_MODULES[arch.activation]())
            if arch.has_dropout_slot:
                modules.append(nn.Dropout(arch.dropout_rate))
    return nn.Sequential(*modules)


def init_params(arch: QNetworkArch, seed: int) -> dict[str, torch.Tensor]:
    """Fresh float32 parameters, bit-identical for equal ``(arch, seed)`` (``core.checkpoint_file.init_arrays``).

    Linear weights are Xavier-uniform and biases zero; LayerNorm weight 1,
    bias 0 (the reference initialisation), drawn from a private generator.
    """
    return {key: torch.from_numpy(array) for key, array in init_arrays(arch, seed).items()}


def init_network(arch: QNetworkArch, seed: int) -> QNetwork:
    """A freshly initialised ``QNetwork`` (``init_params``), bit-identical for equal ``(arch, seed)``."""
    model = QNetwork(arch)
    model.load_state_dict(init_params(arch, seed), strict=True)
    return model


def network_from_state_dict(state_dict: Mapping[str, torch.Tensor], arch: QNetworkArch | None = None) -> QNetwork:
    """Build a ``QNetwork`` (eval mode) holding float32 copies of ``state_dict``."""
    arch = arch or infer_arch(state_dict)
    model = QNetwork(arch)
    model.load_state_dict({key: state_dict[key].to(torch.float32) for key in arch.state_dict_keys()}, strict=True)
    return model.eval()


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a function that may work in place on its (fresh) input."""
    return _ACTIVATION_FUNCTIONS[name]


LinearFn = Callable[[torch.Tensor], torch.Tensor]


def make_forward(
    arch: QNetworkArch,
    params: Mapping[str, torch.Tensor],
    *,
    linears: Sequence[LinearFn] | None = None,
    hidden: list[torch.Tensor] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The eval-mode forward of ``arch`` on ``params``: ``(batch, input_dim)`` -> ``(batch, output_dim)`` float32.

    Weights are transposed once here, not per call. ``linears`` replaces the
    Linear of each block (int8 static serving); ``hidden``, if given, receives
    every hidden layer's post-activation output of each call (distillation's
    teacher pass, crossover's unit matching).
    """
    activate = activation_function(arch.activation)
    steps = []
    for position, block in enumerate(arch.blocks):
        if linears is not None:
            linear = linears[position]
        else:
            weight_t, bias = params[block.weight].t(), params[block.bias]
            linear = _addmm_linear(bias, weight_t)
        norm = (params[block.norm_weight], params[block.norm_bias]) if block.norm else None
        steps.append((linear, norm, block.hidden))

    def forward(states: torch.Tensor) -> torch.Tensor:
        out = states
        for linear, norm, is_hidden in steps:
            out = linear(out)
            if is_hidden:
                if norm is not None:
                    out = F.layer_norm(out, norm[0].shape, norm[0], norm[1], LAYERNORM_EPS)
                out = activate(out)
                if hidden is not None:
                    hidden.append(out)
        return out

    return forward


def _addmm_linear(bias: torch.Tensor, weight_t: torch.Tensor) -> LinearFn:
    return lambda inputs: torch.addmm(bias, inputs, weight_t)


def functional_forward(arch: QNetworkArch, params: Mapping[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """``make_forward(arch, params)(states)``: eval-mode Q-values ``(batch, output_dim)``."""
    return make_forward(arch, params)(states)


def hidden_activations(
    arch: QNetworkArch, params: Mapping[str, torch.Tensor], states: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every hidden layer's post-activation output ``(n, width)`` and the Q-values, in one pass."""
    hidden: list[torch.Tensor] = []
    logits = make_forward(arch, params, hidden=hidden)(states)
    return hidden, logits


def param_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Sum of ``numel * element_size`` over the tensors (the stored parameter bytes)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
