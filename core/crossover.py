"""Crossover: build one child network from two parents of the same architecture.

Modes (``CrossoverConfig.mode``):

- ``random``: each tensor (or, with ``granularity="layer"``, each block of a
  Linear and the LayerNorm after it) comes whole from A with probability
  ``alpha``, else from B. Draws are ``default_rng(seed).random`` in sorted
  key (or block) order, so a seed fixes the child.
- ``layer``: blocks alternate A, B, A, ...: in the reference layout
  ``network.{0,1}`` from A, ``network.{4,5}`` from B, ``network.8`` from A.
- ``weighted``: every element is ``alpha * A + (1 - alpha) * B``.
- ``aligned``: B's hidden units are first permuted to line up with A's, in
  every hidden layer of any depth (a permutation of hidden units, carried
  through the LayerNorm, if any, and the next Linear, leaves B's function
  unchanged), then the two are blended as in ``weighted``. Without the permutation, unit *i* of A is averaged with an
  unrelated unit *i* of B, which is why plain averaging of independently
  trained networks loses most of what both knew.

Parents may be float or int8 checkpoints (int8 weights are dequantized) of the
same architecture (shapes and activation); the child is always a float32
checkpoint with A's architecture. Every mode walks the layer list
(``QNetworkArch.blocks``), never fixed key names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from core.artifacts import Checkpoint, float_checkpoint
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    MAX_WEIGHT_MATCHING_ROUNDS,
    AlignBy,
    CrossoverConfig,
    CrossoverMode,
)
from core.interrupt import Interrupt, checker
from core.networks import LAYERNORM_EPS, QNetworkArch, make_forward, rekey
from core.quantize import dequantize
from core.threads import single_threaded

Source = Literal["a", "b", "blend"]

CORRELATION_EPS = 1e-8
PRE_NORM_TIE_BREAK = 1e-3


@dataclass(frozen=True)
class CrossoverResult:
    """The child and how it was made.

    ``sources`` maps every state-dict key to ``"a"``, ``"b"`` or ``"blend"``.
    In ``aligned`` mode ``permutations`` holds one int64 index tensor per
    hidden layer applied to B (unit *i* of the aligned B is B's unit
    ``perm[i]``) and ``matched_similarity`` the mean similarity of matched
    unit pairs per hidden layer (a correlation in [-1, 1] for ``activations``, a raw dot product for
    ``weights``); both are None in the other modes.
    """

    child: Checkpoint
    mode: CrossoverMode
    alpha: float
    sources: dict[str, Source]
    permutations: tuple[torch.Tensor, ...] | None
    matched_similarity: tuple[float, ...] | None
    elapsed_seconds: float


@single_threaded
def crossover(
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    config: CrossoverConfig = CrossoverConfig(),
    states: torch.Tensor | np.ndarray | None = None,
    interrupt: Interrupt | None = None,
) -> CrossoverResult:
    """Cross two parents over into a float32 child with A's architecture.

    ``states`` is ``(n_states, input_dim)`` float32, required only by
    ``aligned`` mode with ``align_by="activations"`` or ``repair_layernorm``.
    ``interrupt`` (``core.interrupt``) runs per round of weight matching.
    Raises ``ValueError`` when the parents' architectures differ (naming both
    and what differs) or when required states are missing or mis-shaped.
    """
    started = time.perf_counter()
    arch = parent_a.arch
    _check_same_arch(parent_a.arch, parent_b.arch)
    params_a = dequantize(parent_a)
    params_b = rekey(dequantize(parent_b), parent_b.arch, arch)
    keys = tuple(sorted(arch.state_dict_keys()))
    permutations = None
    matched_similarity = None
    if config.mode == "random":
        sources = _random_sources(arch, keys, config)
        child = {key: (params_a if sources[key] == "a" else params_b)[key] for key in keys}
    elif config.mode == "layer":
        block_of = _block_of_keys(arch)
        sources = {key: "a" if block_of[key] % 2 == 0 else "b" for key in keys}
        child = {key: (params_a if sources[key] == "a" else params_b)[key] for key in keys}
    elif config.mode == "weighted":
        sources = dict.fromkeys(keys, "blend")
        child = _blend(params_a, params_b, config.alpha)
    else:
        state_tensor = _as_states(states, arch.input_dim) if config.needs_states else torch.empty(0)
        if config.align_by == "activations":
            perms, matched_similarity = match_by_activations(arch, params_a, params_b, state_tensor)
        else:
            perms, matched_similarity = match_by_weights(arch, params_a, params_b, interrupt)
        permutations = tuple(perms)
        aligned_b = permute_hidden(arch, params_b, perms)
        sources = dict.fromkeys(keys, "blend")
        child = _blend(params_a, aligned_b, config.alpha)
        if config.repair_layernorm and arch.norm == "layernorm":
            child = repair_layernorm(arch, child, params_a, aligned_b, state_tensor, config.alpha)
    checkpoint = float_checkpoint(child, arch=arch, source_format=parent_a.source_format)
    return CrossoverResult(
        child=checkpoint,
        mode=config.mode,
        alpha=float(config.alpha),
        sources=sources,
        permutations=permutations,
        matched_similarity=matched_similarity,
        elapsed_seconds=time.perf_counter() - started,
    )


def permute_hidden(
    arch: QNetworkArch, params: Mapping[str, torch.Tensor], perms: list[torch.Tensor] | tuple[torch.Tensor, ...]
) -> dict[str, torch.Tensor]:
    """Reorder every hidden layer's units; the network computes the same function.

    Unit *i* of hidden layer ``l`` in the result is unit ``perms[l][i]`` of
    ``params``. Each unit keeps its incoming weights and bias, its LayerNorm
    weight and bias (LayerNorm normalises over the set of units, which a
    reordering does not change) and the next Linear's input column. ``perms``
    holds one int64 permutation of ``range(width)`` per hidden layer.
    """
    if len(perms) != arch.depth:
        raise ValueError(f"permute_hidden needs {arch.depth} permutations (one per hidden layer), got {len(perms)}")
    checked = [
        _check_permutation(perm, width, f"perms[{layer}]")
        for layer, (perm, width) in enumerate(zip(perms, arch.hidden_sizes, strict=True))
    ]
    permuted = dict(params)
    for position, block in enumerate(arch.blocks):
        weight = params[block.weight]
        if position > 0:
            weight = weight[:, checked[position - 1]]
        if block.hidden:
            rows = checked[position]
            weight = weight[rows]
            permuted[block.bias] = params[block.bias][rows]
            if block.norm:
                permuted[block.norm_weight] = params[block.norm_weight][rows]
                permuted[block.norm_bias] = params[block.norm_bias][rows]
        permuted[block.weight] = weight
    return permuted


def match_by_activations(
    arch: QNetworkArch, params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], states: torch.Tensor
) -> tuple[list[torch.Tensor], tuple[float, ...]]:
    """Permutations of B's hidden units that best match A's on ``states``, one per hidden layer.

    For each hidden layer, the Pearson correlation of every (A unit, B unit)
    pair of post-activation outputs over the states is maximised in total by a
    Hungarian assignment. Post-activation outputs are what the next layer sees;
    on distilled students they matched better than pre- or post-LayerNorm ones.
    A layer's best permutation does not depend on the others', because a unit's
    outputs are unchanged by permuting the layers before it. Returns
    ``(perms, mean matched post-activation correlation per layer)``.
    """
    with torch.no_grad():
        layers_a = _hidden_layers(arch, params_a, states)
        layers_b = _hidden_layers(arch, params_b, states)
    permutations = []
    similarities = []
    for (pre_norm_a, output_a), (pre_norm_b, output_b) in zip(layers_a, layers_b, strict=True):
        correlation = _correlation(output_a, output_b)
        # A dead unit (constant output on every state) correlates 0 with all
        # units; a small share of pre-activation correlation still pairs it sensibly.
        permutation, _ = _assign(correlation + PRE_NORM_TIE_BREAK * _correlation(pre_norm_a, pre_norm_b))
        permutations.append(permutation)
        similarities.append(float(correlation[torch.arange(len(permutation)), permutation].mean()))
    return permutations, tuple(similarities)


def match_by_weights(
    arch: QNetworkArch,
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    interrupt: Interrupt | None = None,
) -> tuple[list[torch.Tensor], tuple[float, ...]]:
    """Permutations of B's hidden units that best match A's weights, without data, one per hidden layer.

    A unit is described by its incoming weights, bias and LayerNorm weight and
    bias (if any), plus its outgoing column in the next Linear. Each layer's
    assignment maximises the summed dot products of those descriptions, which
    depend on the neighbouring layers' permutations, so the assignments are
    redone layer by layer until none changes (coordinate ascent; at most 100
    rounds, ``interrupt`` before each). Returns ``(perms, mean matched dot product per layer)``.
    """
    check = checker(interrupt)
    blocks = arch.blocks
    perms = [torch.arange(width) for width in arch.hidden_sizes]
    similarities = [0.0] * arch.depth
    for _ in range(MAX_WEIGHT_MATCHING_ROUNDS):
        check()
        changed = False
        for layer in range(arch.depth):
            input_perm = perms[layer - 1] if layer > 0 else None
            similarity = (
                _unit_features(params_a, blocks[layer], None) @ _unit_features(params_b, blocks[layer], input_perm).t()
            )
            outgoing_b = params_b[blocks[layer + 1].weight]
            if layer + 1 < arch.depth:
                outgoing_b = outgoing_b[perms[layer + 1]]
            similarity += params_a[blocks[layer + 1].weight].t() @ outgoing_b
            new_perm, similarities[layer] = _assign(similarity)
            if not torch.equal(new_perm, perms[layer]):
                perms[layer], changed = new_perm, True
        if not changed:
            break
    return perms, tuple(similarities)


def repair_layernorm(
    arch: QNetworkArch,
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
    hit them (keeping the sign of the blended weight). Layers are repaired in
    order, since each feeds the statistics of the next.
    """
    repaired = dict(child)
    with torch.no_grad():
        layers_a = _hidden_layers(arch, params_a, states)
        layers_b = _hidden_layers(arch, aligned_b, states)
        for layer, block in enumerate(arch.hidden_blocks):
            weight_key, bias_key = block.norm_weight, block.norm_bias
            target_mean, target_std = [], []
            for params, layers in ((params_a, layers_a), (aligned_b, layers_b)):
                output = _normalise(layers[layer][0]) * params[weight_key] + params[bias_key]
                target_mean.append(output.mean(dim=0))
                target_std.append(output.std(dim=0))
            mean = alpha * target_mean[0] + (1.0 - alpha) * target_mean[1]
            std = alpha * target_std[0] + (1.0 - alpha) * target_std[1]
            child_normalised = _normalise(_hidden_layers(arch, repaired, states)[layer][0])
            sign = torch.where(repaired[weight_key] < 0, -1.0, 1.0)
            weight = sign * std / (child_normalised.std(dim=0) + LAYERNORM_EPS)
            repaired[weight_key] = weight
            repaired[bias_key] = mean - weight * child_normalised.mean(dim=0)
    return repaired


def _hidden_layers(
    arch: QNetworkArch, params: Mapping[str, torch.Tensor], states: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(Linear output before norm and activation, post-activation output)]`` per hidden layer, each ``(n_states,
    width)``.
    """
    pre_activations: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def recording(block) -> Callable[[torch.Tensor], torch.Tensor]:
        weight_t, bias = params[block.weight].t(), params[block.bias]

        def linear(inputs: torch.Tensor) -> torch.Tensor:
            result = torch.addmm(bias, inputs, weight_t)
            pre_activations.append(result.clone())
            return result

        return linear

    make_forward(arch, params, linears=[recording(block) for block in arch.blocks], hidden=outputs)(states)
    return list(zip(pre_activations[: arch.depth], outputs, strict=True))


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
    # scipy is imported by the first aligned crossover: it adds ~40 MiB to every idle worker otherwise.
    from scipy.optimize import linear_sum_assignment

    matrix = similarity.double().numpy()
    rows, columns = linear_sum_assignment(matrix, maximize=True)
    return torch.from_numpy(columns).to(torch.int64), float(matrix[rows, columns].mean())


def _unit_features(params: Mapping[str, torch.Tensor], block, input_perm: torch.Tensor | None) -> torch.Tensor:
    """Per unit of a hidden block: incoming row, bias, and LayerNorm weight and bias when there is a norm."""
    weight = params[block.weight]
    if input_perm is not None:
        weight = weight[:, input_perm]
    columns = [weight, params[block.bias][:, None]]
    if block.norm:
        columns += [params[block.norm_weight][:, None], params[block.norm_bias][:, None]]
    return torch.cat(columns, dim=1)


def _blend(
    params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    return {key: params_a[key] * alpha + params_b[key] * (1.0 - alpha) for key in params_a}


def _block_of_keys(arch: QNetworkArch) -> dict[str, int]:
    """Each key's logical block: a Linear and the LayerNorm that follows it."""
    return {key: block.position for block in arch.blocks for key in block.tensor_keys()}


def _random_sources(arch: QNetworkArch, keys: tuple[str, ...], config: CrossoverConfig) -> dict[str, Source]:
    rng = np.random.default_rng(config.seed)
    if config.granularity == "tensor":
        draws = rng.random(len(keys))
        return {key: "a" if draw < config.alpha else "b" for key, draw in zip(keys, draws, strict=True)}
    block_draws = rng.random(len(arch.blocks))
    block_of = _block_of_keys(arch)
    return {key: "a" if block_draws[block_of[key]] < config.alpha else "b" for key in keys}


def _check_same_arch(arch_a: QNetworkArch, arch_b: QNetworkArch) -> None:
    if not arch_a.same_function_family(arch_b):
        raise ValueError(
            f"parents must share an architecture, got A {arch_a.describe()} and B {arch_b.describe()}: "
            f"{arch_a.difference(arch_b)}"
        )


def _as_states(states: torch.Tensor | np.ndarray | None, input_dim: int) -> torch.Tensor:
    if states is None:
        raise ValueError(
            "states are required for mode='aligned' with align_by='activations' or repair_layernorm=True, got None"
        )
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
