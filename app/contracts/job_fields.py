"""What each field of a job body means, and the values it may take, as the API documents and checks them.

A config field's validity bounds are declared once, on its ``core``
dataclass field (``core.configs.param``), which enforces them; the params
models read them from there (``documented_field``), so the OpenAPI schema
shows exactly the bounds core checks. Descriptions are the API's: one entry
serves every kind with a field of that name (``lr`` means the same in
distill, QAT and fine-tune); ``"Config.field"`` entries cover a name whose
meaning differs by config. ``OPERATING_CAPS`` are the service's limits from
settings (``RECOMB_...``), shown in the OpenAPI schema as ``x-operating-cap``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from core.configs import declared_bounds

FIELD_DESCRIPTIONS: dict[str, str] = {
    # training (distill, QAT, fine-tune)
    "epochs": "passes over the training states",
    "lr": "Adam learning rate",
    "batch_size": "states per optimiser step",
    "temperature": "softmax temperature of the soft-target (KL) loss",
    "temp_decay": "temperature multiplied by this after every epoch (1: fixed)",
    "alpha": "weight of the soft-target loss against the hard-label loss (1: soft only)",
    "loss_fn": "training loss: KL divergence of softened Q-values, or MSE of raw Q-values",
    "max_grad_norm": "gradient norm clipped to this; null: no clipping",
    "val_fraction": "share of the training states held out to choose the best epoch",
    "early_stopping_patience": "epochs without a better validation loss before training stops (0: never)",
    "seed": "seed of every random draw of the job (split, shuffling, init)",
    "adam_betas": "Adam's (beta1, beta2)",
    "ema_decay": "decay of the exponential moving average of the weights that is validated and kept; null: none",
    "engine": "'fused': the service's fused training step; 'autograd': torch autograd and torch.optim",
    "dropout_rate": "dropout while training",
    # distill
    "hidden_sizes": (
        "student widths, one per teacher layer (null entry: half the teacher's, at least 16); null: all halved"
    ),
    "init": (
        "student init: 'shared' (one Xavier init per architecture, from init_seed), 'teacher' (a least-squares "
        "subset of the teacher's units) or 'random' (Xavier from seed)"
    ),
    "init_seed": "seed of the shared init",
    # PTQ and QAT
    "mode": "'dynamic': weights only; 'static': activations calibrated on the states too",
    "granularity": "one int8 scale per tensor, or per output channel",
    "calibration_batches": "batches of states a static calibration reads",
    "calibration_batch_size": "states per calibration batch",
    "convert": "also convert the trained network to a real int8 checkpoint",
    "min_agreement": "top-1 agreement with the float model an int8 attempt must keep to be chosen",
    "selection_fraction": "share of the states held out from calibration and training, on which every choice is made",
    "ptq": "settings of the PTQ attempts (mode is set per attempt)",
    "qat": "settings of the QAT attempt",
    # crossover
    "CrossoverConfig.mode": (
        "'random' (each tensor from A with probability alpha), 'layer' (alternate layers), 'weighted' (blend) "
        "or 'aligned' (blend after matching hidden units)"
    ),
    "CrossoverConfig.alpha": "A's weight in 'weighted' and 'aligned'; P(take A) in 'random'",
    "CrossoverConfig.seed": "seed of 'random' mode; null: fresh entropy, not reproducible",
    "CrossoverConfig.granularity": "what 'random' mode draws: whole tensors or whole layers",
    "align_by": "what 'aligned' matches units on: activation correlation over the states, or weights",
    "repair_layernorm": "'aligned' only: reset blended LayerNorm affines to the blend of the parents' spread",
    # fine-tune
    "regime": "a named preset of epochs, lr, batch size and quantization; explicit fields win",
    "FinetuneConfig.epochs": "passes over the training states; null: the regime's",
    "FinetuneConfig.lr": "Adam learning rate; null: the regime's",
    "FinetuneConfig.batch_size": "states per optimiser step; null: the regime's",
    "FinetuneConfig.temperature": "softmax temperature; null: 3.0 toward one teacher, 0.5 toward two",
    "FinetuneConfig.dropout_rate": "dropout while tuning; null: the child's own rate",
    "teacher_weight_a": "teacher A's share of the dual-teacher loss (1: A only)",
    "balance_teachers": "rescale B's Q-values so the target splits the parents' disagreements by weight",
    "quantization_applied": "quantization during tuning; null: the regime's",
    "export_int8": "also store an int8 copy of the tuned child; null: the regime's",
    # validation thresholds
    "min_action_agreement": "least top-1 agreement that passes",
    "max_kl_divergence": "largest KL divergence that passes",
    "max_mse": "largest Q-value MSE that passes",
    "max_mae": "largest Q-value MAE that passes; null: not checked",
    "min_cosine_similarity": "least mean cosine similarity of Q-value vectors that passes",
    "max_param_ratio": "largest student/teacher parameter ratio that passes",
    "max_latency_ratio": "largest latency ratio that passes (gates only with gate_latency)",
    "QuantizedValidationConfig.max_latency_ratio": (
        "largest int8/float latency ratio that passes (gates only with gate_latency)"
    ),
    "min_robustness_action_agreement": "least agreement on every robustness slice that passes; null: not checked",
    "max_relative_return_drop": "largest relative drop of rollout return that passes; null: not checked",
    "max_mean_q_error": "largest mean absolute Q error of int8 against float that passes",
    "gate_cosine": "let the cosine check fail the report (otherwise reported only)",
    "gate_latency": "let the latency check fail the report (otherwise reported only)",
    "gate_reference_checks": "let the reference's per-parent checks fail the report",
    "report_only": "report the checks without failing the job's verdict",
    "top_k_values": "the k of each top-k agreement reported",
    "robustness": "report agreement on robustness slices (noise, scaled, shifted states)",
    "robustness_seed": "seed of the robustness slices",
    "rollout_episodes": "greedy rollouts on a seeded linear MDP (0: none)",
    "rollout_max_steps": "steps per rollout",
    "rollout_seed": "seed of the rollout MDP",
    "latency_warmup": "untimed forward calls before timing",
    "latency_repeats": "timed single-state forward calls",
    "throughput_batch_size": "states per throughput batch (0: no throughput)",
    "throughput_warmup_batches": "untimed throughput batches",
    "throughput_timed_batches": "timed throughput batches",
    "onnxruntime": "also export both networks to ONNX and measure them under onnxruntime",
    "target": "whose behaviour the child should keep: both parents, A or B; null: from the child",
    "min_bound_fraction": "least share of the recombination bound the target agreement must reach",
    "min_oracle_agreement": "least oracle agreement (the child takes A's or B's action) that passes",
    # search
    "preset": "the grid of recipes and regimes; 'custom' builds it from the four grid fields",
    "crossover_modes": "crossover modes of the grid",
    "alpha_values": "crossover alphas (A's weight) drawn or searched",
    "crossover_seeds": "seeds of 'random' crossover in a custom grid",
    "finetune_regimes": "fine-tune regimes of the grid",
    "max_runs": "keep the first N trials; null: all",
    "degenerate_threshold": "flag leaderboard rows whose primary metric is below this (0: off)",
    "finetune_target": "fine-tune toward both parents at equal weights, or toward A only",
    "include_parent_baseline": "rank the two parents with the children",
    "scheduler": "'grid': every trial at full epochs; 'halving': successive halving over epochs",
    "eta": "halving: keep 1/eta of the trials per rung and give them eta times the epochs",
    "min_epochs": "halving: epochs of the first rung",
    # evolve
    "population_size": "members per generation",
    "generations": "generations of children",
    "elite": "best members kept unchanged (at most population_size - 1)",
    "tournament_size": "members drawn per tournament (at most population_size)",
    "EvolveConfig.crossover_modes": "crossover modes each child's is drawn from",
    "mutation_sigma": "Gaussian mutation relative to each tensor's RMS (0: none)",
    "mutation_decay": "mutation_sigma multiplied by this each generation",
    "finetune_regime": "fine-tune regime of every child (float regimes only)",
    "finetune_epochs": "overrides the regime's epochs; null: the regime's",
    "fitness": "what selection maximises: agreement with the targets, or return on the seeded MDP",
    "mdp_seed": "seed of the MDP of 'mdp_return' fitness",
    "mdp_episodes": "episodes per 'mdp_return' fitness",
    "mdp_max_steps": "steps per episode",
    "EvolveConfig.seed": "the one seed every draw of the evolution derives from",
    "SearchConfig.seed": "the one seed every trial's seed derives from",
}

# Limits of this service (settings), beyond what is valid: shown per field, checked before a job is queued.
OPERATING_CAPS: dict[str, tuple[str, str]] = {
    "n_states": ("max_state_values", "rows x input width of the states must not exceed it"),
    "hidden_sizes": ("max_params", "the network made must not have more parameters"),
    "arch": ("max_params", "the network made must not have more parameters"),
    **{
        name: ("max_job_calls", "the job's total network calls (training steps, timed repeats, rollout steps)")
        for name in (
            "epochs",
            "batch_size",
            "latency_repeats",
            "throughput_timed_batches",
            "rollout_episodes",
            "generations",
            "population_size",
            "calibration_batches",
        )
    },
}


def description_for(config_class: type, name: str) -> str | None:
    return FIELD_DESCRIPTIONS.get(f"{config_class.__name__}.{name}") or FIELD_DESCRIPTIONS.get(name)


def documented_field(config_class: type, name: str, annotation: Any, default: Any) -> tuple[Any, Any]:
    """``(annotation, FieldInfo)`` of a config field: its default, its description and core's bounds for it.

    The bounds of a tuple field hold for each item, so they go on the item type.
    """
    description = description_for(config_class, name)
    if description is None:
        raise KeyError(f"{config_class.__name__}.{name} has no entry in app.contracts.job_fields.FIELD_DESCRIPTIONS")
    bounds = declared_bounds(config_class).get(name, {})
    if bounds and _holds_tuple(annotation):
        return _bound_items(annotation, bounds), Field(default, description=description)
    return annotation, Field(
        default,
        description=description,
        gt=bounds.get("gt"),
        ge=bounds.get("ge"),
        lt=bounds.get("lt"),
        le=bounds.get("le"),
    )


def _holds_tuple(annotation: Any) -> bool:
    """Whether ``annotation`` is a tuple, or a union with a tuple in it (``tuple[int, ...] | None``)."""
    return any(typing.get_origin(arg) is tuple for arg in (annotation, *typing.get_args(annotation)))


def _bound_items(annotation: Any, bounds: Mapping[str, float]) -> Any:
    """``annotation`` with every int or float inside it (tuple items, optional entries) given ``bounds``."""
    if annotation in (int, float):
        return Annotated[
            annotation, Field(gt=bounds.get("gt"), ge=bounds.get("ge"), lt=bounds.get("lt"), le=bounds.get("le"))
        ]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return tuple.__class_getitem__(tuple(arg if arg is Ellipsis else _bound_items(arg, bounds) for arg in args))
    if origin in (typing.Union, types.UnionType):
        bounded = [_bound_items(arg, bounds) for arg in args]
        union = bounded[0]
        for arg in bounded[1:]:
            union = union | arg
        return union
    return annotation


def add_operating_caps(schema: dict[str, Any], settings: Any) -> None:
    """Mark each capped property of every component schema with ``x-operating-cap``: its setting and value."""
    for component in schema.get("components", {}).get("schemas", {}).values():
        for name, prop in component.get("properties", {}).items():
            if name in OPERATING_CAPS:
                setting, meaning = OPERATING_CAPS[name]
                prop["x-operating-cap"] = {
                    "setting": f"RECOMB_{setting.upper()}",
                    "value": getattr(settings, setting),
                    "meaning": meaning,
                }
