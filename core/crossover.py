"""Crossover: build one child network from two parents of the same architecture.

Modes (``CrossoverConfig.mode``):

- ``random``: each tensor (or, with ``granularity="layer"``, each block of a
  Linear and the LayerNorm after it) comes whole from A with probability
  ``alpha``, else from B. Draws are ``default_rng(seed).random`` in sorted
  key (or block) order, so a seed fixes the child.
- ``layer``: blocks alternate A, B, A: ``network.{0,1}`` from A,
  ``network.{4,5}`` from B, ``network.8`` from A.
- ``weighted``: every element is ``alpha * A + (1 - alpha) * B``.
- ``aligned``: B's hidden units are first permuted to line up with A's (a
  permutation of hidden units, carried through the LayerNorm and the next
  Linear, leaves B's function unchanged), then the two are blended as in
  ``weighted``. Without the permutation, unit *i* of A is averaged with an
  unrelated unit *i* of B, which is why plain averaging of independently
  trained networks loses most of what both knew.

Parents may be float or int8 checkpoints (int8 weights are dequantized); the
child is always a float32 checkpoint with A's architecture.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from core.artifacts import Checkpoint, float_checkpoint
from core.networks import LAYERNORM_EPS, STATE_DICT_KEYS
from core.quantize import dequantize

CrossoverMode = Literal["random", "layer", "weighted", "aligned"]
Granularity = Literal["tensor", "layer"]
AlignBy = Literal["activations", "weights"]
Source = Literal["a", "b", "blend"]

SORTED_KEYS = tuple(sorted(STATE_DICT_KEYS))
# The reference's logical blocks: a Linear and the LayerNorm that follows it.
BLOCK_OF_MODULE = {"0": 0, "1": 0, "4": 1, "5": 1, "8": 2}
BLOCK_COUNT = 3
MAX_WEIGHT_MATCHING_ROUNDS = 100
CORRELATION_EPS = 1e-8
PRE_NORM_TIE_BREAK = 1e-3


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
    units causes.
    """

    mode: CrossoverMode = "weighted"
    alpha: float = 0.5
    seed: int | None = 0
    granularity: Granularity = "tensor"
    align_by: AlignBy = "activations"
    repair_layernorm: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("random", "layer", "weighted", "aligned"):
            raise ValueError(f"mode must be one of random, layer, weighted, aligned, got {self.mode!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {self.alpha!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {self.seed!r}")
        if self.granularity not in ("tensor", "layer"):
            raise ValueError(f"granularity must be 'tensor' or 'layer', got {self.granularity!r}")
        if self.align_by not in ("activations", "weights"):
            raise ValueError(f"align_by must be 'activations' or 'weights', got {self.align_by!r}")
        if not isinstance(self.repair_layernorm, bool):
            raise ValueError(f"repair_layernorm must be a bool, got {self.repair_layernorm!r}")

    @property
    def needs_states(self) -> bool:
        return self.mode == "aligned" and (self.align_by == "activations" or self.repair_layernorm)


@dataclass(frozen=True)
class CrossoverResult:
    """The child and how it was made.

    ``sources`` maps every state-dict key to ``"a"``, ``"b"`` or ``"blend"``.
    In ``aligned`` mode ``permutations`` holds the two int64 index tensors
    applied to B (unit *i* of the aligned B is B's unit ``perm[i]``) and
    ``matched_similarity`` the mean similarity of matched unit pairs per hidden
    layer (a correlation in [-1, 1] for ``activations``, a raw dot product for
    ``weights``); both are None in the other modes.
    """

    child: Checkpoint
    mode: CrossoverMode
    alpha: float
    sources: dict[str, Source]
    permutations: tuple[torch.Tensor, torch.Tensor] | None
    matched_similarity: tuple[float, float] | None
    elapsed_seconds: float


def crossover(
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    config: CrossoverConfig = CrossoverConfig(),
    states: torch.Tensor | np.ndarray | None = None,
) -> CrossoverResult:
    """Cross two parents over into a float32 child with A's architecture.

    ``states`` is ``(n_states, input_dim)`` float32, required only by
    ``aligned`` mode with ``align_by="activations"`` or ``repair_layernorm``.
    Raises ``ValueError`` when the parents' shapes differ (naming every
    mismatched tensor) or when required states are missing or mis-shaped.
    """
    started = time.perf_counter()
    _check_same_shapes(parent_a, parent_b)
    params_a = dequantize(parent_a)
    params_b = dequantize(parent_b)
    permutations = None
    matched_similarity = None
    if config.mode == "random":
        sources = _random_sources(config)
        child = {key: (params_a if sources[key] == "a" else params_b)[key] for key in SORTED_KEYS}
    elif config.mode == "layer":
        sources = {key: "a" if _block_of(key) % 2 == 0 else "b" for key in SORTED_KEYS}
        child = {key: (params_a if sources[key] == "a" else params_b)[key] for key in SORTED_KEYS}
    elif config.mode == "weighted":
        sources = dict.fromkeys(SORTED_KEYS, "blend")
        child = _blend(params_a, params_b, config.alpha)
    else:
        state_tensor = _as_states(states, parent_a.arch.input_dim) if config.needs_states else None
        if config.align_by == "activations":
            perm_1, perm_2, matched_similarity = match_by_activations(params_a, params_b, state_tensor)
        else:
            perm_1, perm_2, matched_similarity = match_by_weights(params_a, params_b)
        permutations = (perm_1, perm_2)
        aligned_b = permute_hidden(params_b, perm_1, perm_2)
        sources = dict.fromkeys(SORTED_KEYS, "blend")
        child = _blend(params_a, aligned_b, config.alpha)
        if config.repair_layernorm:
            child = repair_layernorm(child, params_a, aligned_b, state_tensor, config.alpha)
    checkpoint = float_checkpoint(child, arch=parent_a.arch)
    return CrossoverResult(
        child=checkpoint,
        mode=config.mode,
        alpha=float(config.alpha),
        sources=sources,
        permutations=permutations,
        matched_similarity=matched_similarity,
        elapsed_seconds=time.perf_counter() - started,
    )


def permute_hidden(params: Mapping[str, torch.Tensor], perm_1: torch.Tensor, perm_2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reorder both hidden layers' units; the network computes the same function.

    Unit *i* of hidden layer 1 in the result is unit ``perm_1[i]`` of
    ``params`` (likewise ``perm_2`` for layer 2). Each unit keeps its incoming
    weights and bias, its LayerNorm weight and bias (LayerNorm normalises over
    the set of units, which a reordering does not change) and the next
    Linear's input column. ``perm_*`` are int64 tensors of length
    ``hidden_size`` holding a permutation of ``range(hidden_size)``.
    """
    hidden_size = params["network.0.weight"].shape[0]
    perm_1 = _check_permutation(perm_1, hidden_size, "perm_1")
    perm_2 = _check_permutation(perm_2, hidden_size, "perm_2")
    return {
        "network.0.weight": params["network.0.weight"][perm_1],
        "network.0.bias": params["network.0.bias"][perm_1],
        "network.1.weight": params["network.1.weight"][perm_1],
        "network.1.bias": params["network.1.bias"][perm_1],
        "network.4.weight": params["network.4.weight"][perm_2][:, perm_1],
        "network.4.bias": params["network.4.bias"][perm_2],
        "network.5.weight": params["network.5.weight"][perm_2],
        "network.5.bias": params["network.5.bias"][perm_2],
        "network.8.weight": params["network.8.weight"][:, perm_2],
        "network.8.bias": params["network.8.bias"],
    }


def match_by_activations(
    params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Permutations of B's hidden units that best match A's on ``states``.

    For each hidden layer, the Pearson correlation of every (A unit, B unit)
    pair of post-ReLU activations over the states is maximised in total by a
    Hungarian assignment. Post-ReLU activations are what the next layer sees;
    on distilled students they matched better than pre- or post-LayerNorm ones.
    A layer's best permutation does not depend on
    the other's, because a unit's activations are unchanged by permuting the
    layer before it. Returns ``(perm_1, perm_2, mean matched post-ReLU correlation per layer)``.
    """
    with torch.no_grad():
        layers_a = _hidden_activations(params_a, states)
        layers_b = _hidden_activations(params_b, states)
    permutations = []
    similarities = []
    for (pre_norm_a, relu_a), (pre_norm_b, relu_b) in zip(layers_a, layers_b):
        correlation = _correlation(relu_a, relu_b)
        # A dead unit (zero after ReLU on every state) correlates 0 with all
        # units; a small share of pre-LayerNorm correlation still pairs it sensibly.
        permutation, _ = _assign(correlation + PRE_NORM_TIE_BREAK * _correlation(pre_norm_a, pre_norm_b))
        permutations.append(permutation)
        similarities.append(float(correlation[torch.arange(len(permutation)), permutation].mean()))
    return permutations[0], permutations[1], (similarities[0], similarities[1])


def match_by_weights(
    params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Permutations of B's hidden units that best match A's weights, without data.

    A unit is described by its incoming weights, bias and LayerNorm weight and
    bias, plus its outgoing column in the next Linear. Each layer's
    assignment maximises the summed dot products of those descriptions, which
    depend on the other layer's permutation, so the two assignments alternate
    until neither changes (coordinate ascent; at most 100 rounds). Returns
    ``(perm_1, perm_2, mean matched dot product per layer)``.
    """
    hidden_size = params_a["network.0.weight"].shape[0]
    perm_1 = torch.arange(hidden_size)
    perm_2 = torch.arange(hidden_size)
    similarities = (0.0, 0.0)
    for _ in range(MAX_WEIGHT_MATCHING_ROUNDS):
        outgoing_b = params_b["network.4.weight"][perm_2]
        similarity_1 = _unit_features(params_a, 0, None) @ _unit_features(params_b, 0, None).t()
        similarity_1 += params_a["network.4.weight"].t() @ outgoing_b
        new_perm_1, mean_1 = _assign(similarity_1)
        similarity_2 = _unit_features(params_a, 4, None) @ _unit_features(params_b, 4, new_perm_1).t()
        similarity_2 += params_a["network.8.weight"].t() @ params_b["network.8.weight"]
        new_perm_2, mean_2 = _assign(similarity_2)
        similarities = (mean_1, mean_2)
        if torch.equal(new_perm_1, perm_1) and torch.equal(new_perm_2, perm_2):
            break
        perm_1, perm_2 = new_perm_1, new_perm_2
    return perm_1, perm_2, similarities


def repair_layernorm(
    child: Mapping[str, torch.Tensor],
    params_a: Mapping[str, torch.Tensor],
    aligned_b: Mapping[str, torch.Tensor],
    states: torch.Tensor,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """Reset the child's LayerNorm affine parameters from statistics over ``states``.

    For each hidden unit, the target mean and standard deviation of the
    LayerNorm output are ``alpha`` times A's plus ``1 - alpha`` times aligned
    B's; the child's weight and bias are solved so its normalised activations
    hit them (keeping the sign of the blended weight). Layer 1 is repaired
    before layer 2's statistics are measured, since it feeds them.
    """
    repaired = dict(child)
    with torch.no_grad():
        layers_a = _hidden_activations(params_a, states)
        layers_b = _hidden_activations(aligned_b, states)
        for layer, norm_index in enumerate((1, 5)):
            weight_key, bias_key = f"network.{norm_index}.weight", f"network.{norm_index}.bias"
            target_mean, target_std = [], []
            for params, layers in ((params_a, layers_a), (aligned_b, layers_b)):
                normalised = _normalise(layers[layer][0])
                output = normalised * params[weight_key] + params[bias_key]
                target_mean.append(output.mean(dim=0))
                target_std.append(output.std(dim=0))
            mean = alpha * target_mean[0] + (1.0 - alpha) * target_mean[1]
            std = alpha * target_std[0] + (1.0 - alpha) * target_std[1]
            child_normalised = _normalise(_hidden_activations(repaired, states)[layer][0])
            sign = torch.where(repaired[weight_key] < 0, -1.0, 1.0)
            weight = sign * std / (child_normalised.std(dim=0) + LAYERNORM_EPS)
            repaired[weight_key] = weight
            repaired[bias_key] = mean - weight * child_normalised.mean(dim=0)
    return repaired


def _hidden_activations(params: Mapping[str, torch.Tensor], states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(pre-LayerNorm, post-ReLU)]`` for both hidden layers, each ``(n_states, hidden)``."""
    layers = []
    hidden = states
    for linear, norm in ((0, 1), (4, 5)):
        pre_norm = torch.addmm(params[f"network.{linear}.bias"], hidden, params[f"network.{linear}.weight"].t())
        normalised = F.layer_norm(pre_norm, pre_norm.shape[-1:], params[f"network.{norm}.weight"], params[f"network.{norm}.bias"], LAYERNORM_EPS)
        hidden = torch.relu(normalised)
        layers.append((pre_norm, hidden))
    return layers


def _normalise(pre_norm: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(pre_norm, pre_norm.shape[-1:], eps=LAYERNORM_EPS)


def _correlation(activations_a: torch.Tensor, activations_b: torch.Tensor) -> torch.Tensor:
    """``(hidden_a, hidden_b)`` Pearson correlations; a unit constant on all states correlates 0."""
    centred_a = activations_a.double() - activations_a.double().mean(dim=0)
    centred_b = activations_b.double() - activations_b.double().mean(dim=0)
    centred_a = centred_a / (centred_a.norm(dim=0) + CORRELATION_EPS)
    centred_b = centred_b / (centred_b.norm(dim=0) + CORRELATION_EPS)
    return centred_a.t() @ centred_b


def _assign(similarity: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Hungarian assignment maximising total similarity: ``(perm, mean matched similarity)``."""
    matrix = similarity.double().numpy()
    rows, columns = linear_sum_assignment(matrix, maximize=True)
    return torch.from_numpy(columns).to(torch.int64), float(matrix[rows, columns].mean())


def _unit_features(params: Mapping[str, torch.Tensor], linear: int, input_perm: torch.Tensor | None) -> torch.Tensor:
    """Per unit of the layer fed by Linear ``linear``: incoming row, bias, LayerNorm weight and bias."""
    weight = params[f"network.{linear}.weight"]
    if input_perm is not None:
        weight = weight[:, input_perm]
    norm = linear + 1
    return torch.cat(
        [weight, params[f"network.{linear}.bias"][:, None], params[f"network.{norm}.weight"][:, None], params[f"network.{norm}.bias"][:, None]],
        dim=1,
    )


def _blend(params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return {key: params_a[key] * alpha + params_b[key] * (1.0 - alpha) for key in SORTED_KEYS}


def _random_sources(config: CrossoverConfig) -> dict[str, Source]:
    rng = np.random.default_rng(config.seed)
    if config.granularity == "tensor":
        draws = rng.random(len(SORTED_KEYS))
        return {key: "a" if draw < config.alpha else "b" for key, draw in zip(SORTED_KEYS, draws)}
    block_draws = rng.random(BLOCK_COUNT)
    return {key: "a" if block_draws[_block_of(key)] < config.alpha else "b" for key in SORTED_KEYS}


def _block_of(key: str) -> int:
    return BLOCK_OF_MODULE[key.split(".")[1]]


def _check_same_shapes(parent_a: Checkpoint, parent_b: Checkpoint) -> None:
    shapes_a = parent_a.arch.param_shapes()
    shapes_b = parent_b.arch.param_shapes()
    mismatched = [f"{key}: A {list(shapes_a[key])} vs B {list(shapes_b[key])}" for key in STATE_DICT_KEYS if shapes_a[key] != shapes_b[key]]
    if mismatched:
        raise ValueError(
            f"parents must share an architecture, got A {parent_a.arch.describe()} and B {parent_b.arch.describe()}: " + "; ".join(mismatched)
        )


def _as_states(states: torch.Tensor | np.ndarray | None, input_dim: int) -> torch.Tensor:
    if states is None:
        raise ValueError("states are required for mode='aligned' with align_by='activations' or repair_layernorm=True, got None")
    tensor = torch.as_tensor(states, dtype=torch.float32)
    if tensor.dim() != 2 or tensor.shape[1] != input_dim or tensor.shape[0] < 2:
        raise ValueError(f"states must have shape (n_states >= 2, {input_dim}), got {list(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("states must be finite")
    return tensor


def _check_permutation(perm: torch.Tensor, size: int, name: str) -> torch.Tensor:
    perm = torch.as_tensor(perm, dtype=torch.int64)
    if perm.shape != (size,) or not torch.equal(torch.sort(perm).values, torch.arange(size)):
        raise ValueError(f"{name} must be a permutation of range({size}), got {perm.tolist()}")
    return perm
