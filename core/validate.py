"""Validators: compare a network under test with the one it should match, and gate on thresholds.

Every report is a JSON-ready dict with ``schema_version``, ``kind``,
``passed``, ``failed_checks`` and ``checks`` ``{name: {value, threshold,
passed, gates}}``; a check with ``gates`` False is reported but never fails
the report. All figures come from ``core.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from core import metrics
from core.artifacts import Checkpoint, encode
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    EVAL_CHUNK_STATES,
    MAX_REPEATS,
    MAX_ROLLOUT_EPISODES,
    MAX_ROLLOUT_STEPS,
    MAX_SEED,
    MAX_TOP_K,
    MAX_TOP_K_VALUES,
    DistillationValidationConfig,
    QuantizedValidationConfig,
    RecombinationTarget,
    RecombinationValidationConfig,
)
from core.interrupt import Interrupt, checker
from core.mdp import LinearMDP, greedy_returns, initial_states
from core.networks import QNetworkArch
from core.quantize import inference_forward, is_static
from core.states import validate_states

SCHEMA_VERSION = "1.0"  # of every report body, validators and job reports alike


def validate_quantized(
    float_ckpt: Checkpoint,
    quant_ckpt: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: QuantizedValidationConfig = QuantizedValidationConfig(),
    teacher: Checkpoint | None = None,
    actions: np.ndarray | None = None,
    interrupt: Interrupt | None = None,
) -> dict:
    """Compare an int8 checkpoint with the float32 one it was made from, on ``states``.

    ``states`` is ``(n_states, input_dim)`` float; use states the int8 model
    was not calibrated on. Reports fidelity (top-1/top-k agreement, KL at
    T=1, MSE, mean and max absolute Q error, cosine), single-sample latency of
    ``states[:1]`` (median/mean/p95, float timed first), throughput on the
    first ``min(throughput_batch_size, n)`` states, RSS around building the
    int8 forward, parameter and file bytes with compression ratios, and with a
    ``teacher`` the fidelity of both models to it; with recorded ``actions``
    (int, one per state) ``recorded_actions`` gives each model's agreement
    with what the agent did. Timings depend on the
    caller's thread setting (workers run one intra-op thread; recorded as
    ``benchmark.torch_threads``). ``interrupt`` (``core.interrupt``) runs
    per evaluation chunk, timed call and throughput batch.

    Raises ``ValueError`` if ``float_ckpt`` is not float32, ``quant_ckpt`` is
    not int8, the architectures differ, or the states do not fit.
    """
    if float_ckpt.format != "float32":
        raise ValueError(f"float_ckpt must be a float32 checkpoint, got {float_ckpt.format}")
    if quant_ckpt.format != "int8":
        raise ValueError(f"quant_ckpt must be an int8 checkpoint, got {quant_ckpt.format}")
    if not float_ckpt.arch.same_shapes(quant_ckpt.arch):
        raise ValueError(f"float_ckpt is {float_ckpt.arch.describe()} but quant_ckpt is {quant_ckpt.arch.describe()}")
    if teacher is not None and (teacher.arch.input_dim, teacher.arch.output_dim) != (
        float_ckpt.arch.input_dim,
        float_ckpt.arch.output_dim,
    ):
        raise ValueError(
            f"teacher is {teacher.arch.describe()}, whose input/output dims differ from float_ckpt's "
            f"{float_ckpt.arch.describe()}"
        )
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), float_ckpt.arch.input_dim))

    float_forward = inference_forward(float_ckpt)
    rss_before = metrics.rss_bytes()
    quant_forward = inference_forward(quant_ckpt)
    rss_after = metrics.rss_bytes()

    check = checker(interrupt)
    float_q = _evaluate(float_forward, state_tensor, check)
    quant_q = _evaluate(quant_forward, state_tensor, check)
    finite = bool(torch.isfinite(quant_q).all())
    fidelity = metrics.fidelity(float_q, quant_q, config.top_k_values) if finite else None

    sample = state_tensor[:1]
    float_latency = metrics.measure_latency(float_forward, sample, config.latency_warmup, config.latency_repeats, check)
    quant_latency = metrics.measure_latency(quant_forward, sample, config.latency_warmup, config.latency_repeats, check)
    latency_ratio = quant_latency.median_ms / max(float_latency.median_ms, 1e-9)

    throughput = None
    if config.throughput_batch_size > 0:
        batch = state_tensor[: config.throughput_batch_size]
        runs = (config.throughput_warmup_batches, config.throughput_timed_batches)
        float_throughput = metrics.measure_throughput(float_forward, batch, *runs, check)
        quant_throughput = metrics.measure_throughput(quant_forward, batch, *runs, check)
        throughput = {
            "batch_size": int(batch.shape[0]),
            "float": float_throughput.to_dict(),
            "quantized": quant_throughput.to_dict(),
            "speedup": quant_throughput.states_per_sec / float_throughput.states_per_sec,
        }

    float_file_bytes, quant_file_bytes = len(encode(float_ckpt)), len(encode(quant_ckpt))
    checks = {
        "finite_outputs": _check(finite, True, finite, gates=True),
        "min_action_agreement": _minimum(_metric(fidelity, "action_agreement"), config.min_action_agreement),
        "max_mean_q_error": _maximum(_metric(fidelity, "mae"), config.max_mean_q_error),
        "min_cosine_similarity": _minimum(_metric(fidelity, "mean_cosine_similarity"), config.min_cosine_similarity),
        "max_latency_ratio": _maximum(latency_ratio, config.max_latency_ratio, gates=config.gate_latency),
    }
    failed = [name for name, check in checks.items() if check["gates"] and not check["passed"]]
    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": "validate-quantized",
        "passed": not failed,
        "failed_checks": failed,
        "checks": checks,
        "fidelity": fidelity,
        "latency": {
            "float": float_latency.to_dict(),
            "quantized": quant_latency.to_dict(),
            "latency_ratio": latency_ratio,
        },
        "throughput": throughput,
        "memory": {
            "rss_bytes_before": rss_before,
            "rss_bytes_after": rss_after,
            "rss_delta_bytes": rss_after - rss_before,
            "peak_rss_bytes": metrics.peak_rss_bytes(),
        },
        "size": {
            "float_param_bytes": float_ckpt.param_bytes,
            "quantized_param_bytes": quant_ckpt.param_bytes,
            "param_compression_ratio": float_ckpt.param_bytes / quant_ckpt.param_bytes,
            "float_file_bytes": float_file_bytes,
            "quantized_file_bytes": quant_file_bytes,
            "file_compression_ratio": float_file_bytes / quant_file_bytes,
        },
        "quantization": {
            **(quant_ckpt.quantization or {}),
            "static_activations": is_static(quant_ckpt),
            "arch": quant_ckpt.arch.describe(),
            "torch_version": torch.__version__,
        },
        "teacher": None,
        "recorded_actions": recorded_action_agreement(actions, {"float": float_q, "quantized": quant_q}),
        "states": {"count": int(state_tensor.shape[0]), "input_dim": int(state_tensor.shape[1])},
        "thresholds": {
            "min_action_agreement": config.min_action_agreement,
            "max_mean_q_error": config.max_mean_q_error,
            "min_cosine_similarity": config.min_cosine_similarity,
            "max_latency_ratio": config.max_latency_ratio,
            "gate_latency": config.gate_latency,
        },
        "benchmark": {
            "top_k_values": list(config.top_k_values),
            "latency_warmup": config.latency_warmup,
            "latency_repeats": config.latency_repeats,
            "throughput_batch_size": config.throughput_batch_size,
            "throughput_warmup_batches": config.throughput_warmup_batches,
            "throughput_timed_batches": config.throughput_timed_batches,
            "torch_threads": torch.get_num_threads(),
        },
        "notes": [
            "Latency is reported but does not gate by default: a single-sample forward of these "
            "micro-networks takes tens of microseconds, almost all per-call overhead and scheduler "
            "noise, so the ratio says little about the int8 model (the reference failed its own 2.0 "
            "gate this way). Set gate_latency to gate it.",
            "The int8 forward dequantizes weights once and runs float kernels; static checkpoints also "
            "round every Linear input to its uint8 grid, exactly as an int8 kernel would.",
            "File bytes are the safetensors encoding (core.artifacts.encode) of each checkpoint.",
        ],
    }
    if config.onnxruntime:
        report["onnxruntime"] = {
            "float": _onnxruntime_column(float_ckpt, float_q, state_tensor, config, check),
            "quantized": _onnxruntime_column(quant_ckpt, quant_q, state_tensor, config, check),
        }
    if teacher is not None:
        teacher_q = _evaluate(inference_forward(teacher), state_tensor, check)
        report["teacher"] = {
            "float": metrics.fidelity(teacher_q, float_q, config.top_k_values),
            "quantized": metrics.fidelity(teacher_q, quant_q, config.top_k_values) if finite else None,
        }
    return report


def _onnxruntime_column(
    checkpoint: Checkpoint,
    service_q: torch.Tensor,
    states: torch.Tensor,
    config: QuantizedValidationConfig,
    interrupt: Interrupt,
) -> dict:
    """The checkpoint's ONNX export run by onnxruntime (as many intra-op threads as torch uses): speed, size and
    agreement.
    """
    import onnxruntime

    from core.export import onnx_bytes

    data = onnx_bytes(checkpoint.to_file())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"states": batch.numpy()})[0])

    runtime_q = _evaluate(forward, states, interrupt)
    column = {
        "file_bytes": len(data),
        "action_agreement_with_service": metrics.action_agreement(service_q, runtime_q),
        "max_abs_error_vs_service": metrics.max_abs_error(service_q, runtime_q),
        "latency": metrics.measure_latency(
            forward, states[:1], config.latency_warmup, config.latency_repeats, interrupt
        ).to_dict(),
        "throughput": None,
        "onnxruntime_version": onnxruntime.__version__,
    }
    if config.throughput_batch_size > 0:
        batch = states[: config.throughput_batch_size]
        column["throughput"] = metrics.measure_throughput(
            forward, batch, config.throughput_warmup_batches, config.throughput_timed_batches, interrupt
        ).to_dict()
    return column


def recorded_action_agreement(
    actions: np.ndarray | torch.Tensor | None, q_values: dict[str, torch.Tensor]
) -> dict | None:
    """``{"n_states", <name>: agreement of the model's greedy action with the recorded one}``, or None without actions.

    ``actions`` holds the action the agent actually took in each state (int,
    ``(n_states,)``); ``q_values`` maps a model's name to its ``(n_states, n_actions)`` Q-values.
    """
    if actions is None:
        return None
    recorded = torch.as_tensor(np.asarray(actions), dtype=torch.int64)
    any_q = next(iter(q_values.values()))
    if recorded.shape != (any_q.shape[0],):
        raise ValueError(f"actions must have shape ({any_q.shape[0]},), one per state, got {list(recorded.shape)}")
    if int(recorded.max()) >= any_q.shape[1]:
        raise ValueError(f"recorded action {int(recorded.max())} is outside the networks' {any_q.shape[1]} actions")
    return {
        "n_states": int(recorded.shape[0]),
        **{name: float((q.argmax(dim=1) == recorded).float().mean()) for name, q in q_values.items()},
    }


def _evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor, interrupt: Interrupt
) -> torch.Tensor:
    """Q-values ``(n_states, output_dim)`` of ``forward`` on ``states``, in chunks (``interrupt`` before each)."""
    outputs = []
    with torch.inference_mode():
        for chunk in states.split(EVAL_CHUNK_STATES):
            interrupt()
            outputs.append(forward(chunk))
    return torch.cat(outputs)


def _metric(fidelity: dict | None, name: str) -> float | None:
    """A fidelity figure, or None when the outputs were not finite."""
    return None if fidelity is None else fidelity[name]


def _check(value: float | bool | None, threshold: float | bool, passed: bool, gates: bool) -> dict:
    return {"value": value, "threshold": threshold, "passed": bool(passed), "gates": gates}


def _minimum(value: float | None, threshold: float, gates: bool = True) -> dict:
    return _check(value, threshold, value is not None and value >= threshold, gates)


def _maximum(value: float | None, threshold: float, gates: bool = True) -> dict:
    return _check(value, threshold, value is not None and value <= threshold, gates)


DISTILLATION_NOTES = (
    "mean_cosine_similarity compares raw Q-value vectors, so it is dominated by each state's Q offset and "
    "scale, which the soft KL objective deliberately leaves free (softmax ignores the offset); the check is "
    "reported but does not gate unless gate_cosine is set. action_agreement and kl_divergence measure what "
    "distillation optimises.",
    "Latency is reported but does not gate by default: a single-sample forward of these micro-networks is "
    "almost all per-call overhead and scheduler noise. Set max_latency_ratio and gate_latency to gate it.",
)


def robustness_slices(states: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The reference's perturbed copies of ``(n, d)`` float32 ``states``, drawn from ``default_rng(seed)``.

    ``low_resource = s * 0.5``; ``high_threat = s + 0.25 N(0, 1)`` (first draw);
    ``sparse_obs = s * [U > 0.5]`` (second draw).
    """
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.standard_normal(tuple(states.shape)).astype(np.float32))
    keep = torch.from_numpy((rng.random(tuple(states.shape)) > 0.5).astype(np.float32))
    return {"low_resource": states * 0.5, "high_threat": states + 0.25 * noise, "sparse_obs": states * keep}


def relative_return_drop(parent_return: float, student_return: float) -> float:
    """``max(0, 1 - student / parent)`` for a positive parent return.

    Computed as ``(parent - student) / |parent|`` so that with a negative
    parent return a worse student still counts as a drop; with a zero parent
    return it is the absolute shortfall.
    """
    shortfall = parent_return - student_return
    return max(0.0, shortfall / abs(parent_return) if parent_return != 0 else shortfall)


def validate_distillation(
    teacher: Checkpoint,
    student: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: DistillationValidationConfig = DistillationValidationConfig(),
    actions: np.ndarray | None = None,
    interrupt: Interrupt | None = None,
) -> dict:
    """Compare a distilled ``student`` with its ``teacher`` on ``states`` (reference §8.1).

    ``states`` is ``(n_states, input_dim)`` float; use states the student was
    not trained on. Either checkpoint may be float32 or int8. ``metrics``
    holds ``action_agreement``, ``top_k_agreements`` (keyed by clamped k),
    ``kl_divergence`` (T=1), ``mse``, ``mae``, ``max_abs_error``,
    ``mean_cosine_similarity``, parameter counts and ``param_ratio``, median
    single-sample latencies (teacher timed first) and ``latency_ratio``,
    ``robustness_slice_agreements`` and, with rollouts, ``rollout``
    (``core.mdp``). With recorded ``actions`` (int, one per state),
    ``recorded_actions`` gives both models' agreement with what the agent did.
    ``interrupt`` (``core.interrupt``) runs per evaluation chunk, timed call
    and rollout step. Raises ``ValueError`` when the networks' input/output
    dims differ or the states or actions do not fit.
    """
    if (teacher.arch.input_dim, teacher.arch.output_dim) != (student.arch.input_dim, student.arch.output_dim):
        raise ValueError(
            f"teacher is {teacher.arch.describe()} but student is {student.arch.describe()}: input/output dims differ"
        )
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), teacher.arch.input_dim))
    teacher_forward, student_forward = inference_forward(teacher), inference_forward(student)
    check = checker(interrupt)
    teacher_q, student_q = (
        _evaluate(teacher_forward, state_tensor, check),
        _evaluate(student_forward, state_tensor, check),
    )
    fidelity = metrics.fidelity(teacher_q, student_q, config.top_k_values)
    slice_agreements = {}
    if config.robustness:
        for name, sliced in robustness_slices(state_tensor, config.robustness_seed).items():
            slice_agreements[name] = metrics.action_agreement(
                _evaluate(teacher_forward, sliced, check), _evaluate(student_forward, sliced, check)
            )

    sample = state_tensor[:1]
    teacher_latency = metrics.measure_latency(
        teacher_forward, sample, config.latency_warmup, config.latency_repeats, check
    )
    student_latency = metrics.measure_latency(
        student_forward, sample, config.latency_warmup, config.latency_repeats, check
    )
    parent_params, student_params = teacher.arch.param_count, student.arch.param_count
    report_metrics = {
        **fidelity,
        "parent_param_count": parent_params,
        "student_param_count": student_params,
        "param_ratio": student_params / parent_params,
        "parent_inference_ms": teacher_latency.median_ms,
        "student_inference_ms": student_latency.median_ms,
        "latency_ratio": student_latency.median_ms / max(teacher_latency.median_ms, 1e-9),
        "robustness_slice_agreements": slice_agreements,
    }
    checks = {
        "min_action_agreement": _minimum(fidelity["action_agreement"], config.min_action_agreement),
        "max_kl_divergence": _maximum(fidelity["kl_divergence"], config.max_kl_divergence),
        "max_mse": _maximum(fidelity["mse"], config.max_mse),
        "min_cosine_similarity": _minimum(
            fidelity["mean_cosine_similarity"], config.min_cosine_similarity, gates=config.gate_cosine
        ),
        "max_param_ratio": _maximum(report_metrics["param_ratio"], config.max_param_ratio),
    }
    if config.max_mae is not None:
        checks["max_mae"] = _maximum(fidelity["mae"], config.max_mae)
    if config.max_latency_ratio is not None:
        checks["max_latency_ratio"] = _maximum(
            report_metrics["latency_ratio"], config.max_latency_ratio, gates=config.gate_latency
        )
    if config.min_robustness_action_agreement is not None:
        for name, agreement in slice_agreements.items():
            checks[f"min_robustness_action_agreement.{name}"] = _minimum(
                agreement, config.min_robustness_action_agreement
            )
    rollout = None
    if config.rollout_episodes:
        rollout = _distillation_rollout(teacher_forward, student_forward, teacher.arch, config, check)
        report_metrics["rollout"] = rollout
        if config.max_relative_return_drop is not None:
            checks["max_relative_return_drop"] = _maximum(rollout["relative_drop"], config.max_relative_return_drop)
    failed = [name for name, check in checks.items() if check["gates"] and not check["passed"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "validate-distillation",
        "passed": not failed,
        "failed_checks": failed,
        "checks": checks,
        "metrics": report_metrics,
        "thresholds": {
            "min_action_agreement": config.min_action_agreement,
            "max_kl_divergence": config.max_kl_divergence,
            "max_mse": config.max_mse,
            "min_cosine_similarity": config.min_cosine_similarity,
            "max_param_ratio": config.max_param_ratio,
            "max_mae": config.max_mae,
            "max_latency_ratio": config.max_latency_ratio,
            "min_robustness_action_agreement": config.min_robustness_action_agreement,
            "max_relative_return_drop": config.max_relative_return_drop,
            "gate_cosine": config.gate_cosine,
            "gate_latency": config.gate_latency,
        },
        "rollout": rollout,
        "label_metrics": None,
        "recorded_actions": recorded_action_agreement(actions, {"teacher": teacher_q, "student": student_q}),
        "states": {"count": int(state_tensor.shape[0]), "input_dim": int(state_tensor.shape[1])},
        "benchmark": {
            "top_k_values": list(config.top_k_values),
            "latency_warmup": config.latency_warmup,
            "latency_repeats": config.latency_repeats,
            "robustness_seed": config.robustness_seed if config.robustness else None,
            "torch_threads": torch.get_num_threads(),
        },
        "notes": list(DISTILLATION_NOTES),
    }


def _distillation_rollout(
    teacher_forward: Callable[[torch.Tensor], torch.Tensor],
    student_forward: Callable[[torch.Tensor], torch.Tensor],
    arch: QNetworkArch,
    config: DistillationValidationConfig,
    interrupt: Interrupt,
) -> dict:
    """Mean greedy returns of both models on the same seeded linear MDP and start states."""
    mdp = LinearMDP.from_seed(config.rollout_seed, arch.input_dim, arch.output_dim)
    starts = initial_states(config.rollout_seed, config.rollout_episodes, arch.input_dim, interrupt)
    parent_return = float(greedy_returns(teacher_forward, mdp, starts, config.rollout_max_steps, interrupt).mean())
    student_return = float(greedy_returns(student_forward, mdp, starts, config.rollout_max_steps, interrupt).mean())
    return {
        "parent_mean_return": parent_return,
        "student_mean_return": student_return,
        "relative_drop": relative_return_drop(parent_return, student_return),
        "n_episodes": config.rollout_episodes,
        "max_steps": config.rollout_max_steps,
        "base_seed": config.rollout_seed,
    }


def recombination_bound(parents_agreement: float, target: RecombinationTarget) -> float:
    """The best target agreement any child can reach.

    Toward both parents: a child agrees with both wherever they agree (a
    share AB of the states) and with one of them elsewhere, so the larger of
    its two agreements is at least, and the smaller at most, ``(1 + AB) / 2``.
    Toward one parent: 1 (the child can be that parent).
    """
    return (1.0 + parents_agreement) / 2.0 if target == "both" else 1.0


def validate_recombination(
    child: Checkpoint,
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    states: torch.Tensor | np.ndarray,
    config: RecombinationValidationConfig = RecombinationValidationConfig(),
    actions: np.ndarray | None = None,
    interrupt: Interrupt | None = None,
) -> dict:
    """Compare a crossover child with both parents on ``states`` and judge it against what they allow.

    ``states`` is ``(n_states, input_dim)`` float; use states the child was
    not fine-tuned or selected on. Each checkpoint may be float32 or int8.
    ``comparisons`` holds ``child_vs_parent_a``, ``child_vs_parent_b`` (the
    parent is the reference, the child the query: top-1 and top-k
    agreement, KL at T=1, MSE, MAE, cosine) and ``parent_a_vs_parent_b``.
    ``summary`` holds both agreements, the oracle agreement,
    ``primary_metric`` (the smaller agreement, the search's ranking figure),
    ``parents_agreement`` (AB), the ``target``, its ``target_agreement``,
    ``bound`` and ``bound_fraction``. With recorded ``actions``,
    ``recorded_actions`` gives each network's agreement with what the agent
    did. ``interrupt`` (``core.interrupt``) runs per evaluation chunk.
    Raises ``ValueError`` if the architectures differ or the states do not fit.
    """
    for name, parent in (("parent_a", parent_a), ("parent_b", parent_b)):
        if not parent.arch.same_shapes(child.arch):
            raise ValueError(f"{name} is {parent.arch.describe()} but the child is {child.arch.describe()}")
    target = config.target or child.metadata.get("target") or "both"
    state_tensor = torch.from_numpy(validate_states(np.asarray(states), child.arch.input_dim))
    check = checker(interrupt)
    q_child, q_a, q_b = (
        _evaluate(inference_forward(checkpoint), state_tensor, check) for checkpoint in (child, parent_a, parent_b)
    )
    comparisons: dict[str, dict] = {}
    checks: dict[str, dict] = {}
    gates = config.gate_reference_checks
    for name, reference in (("child_vs_parent_a", q_a), ("child_vs_parent_b", q_b)):
        fidelity = metrics.fidelity(reference, q_child, config.top_k_values)
        comparison_checks = {
            "action_agreement": _minimum(fidelity["action_agreement"], config.min_action_agreement, gates),
            "kl_divergence": _maximum(fidelity["kl_divergence"], config.max_kl_divergence, gates),
            "mse": _maximum(fidelity["mse"], config.max_mse, gates),
            "mean_cosine_similarity": _minimum(fidelity["mean_cosine_similarity"], config.min_cosine_similarity, gates),
        }
        checks.update({f"{name}.{metric}": check for metric, check in comparison_checks.items()})
        comparisons[name] = {
            "label": name,
            **fidelity,
            "passed": all(check["passed"] for check in comparison_checks.values()),
        }
    comparisons["parent_a_vs_parent_b"] = {
        "label": "parent_a_vs_parent_b",
        **metrics.fidelity(q_a, q_b, config.top_k_values),
        "passed": None,
    }
    agree_a, agree_b = (
        comparisons["child_vs_parent_a"]["action_agreement"],
        comparisons["child_vs_parent_b"]["action_agreement"],
    )
    parents_agreement = comparisons["parent_a_vs_parent_b"]["action_agreement"]
    oracle = metrics.oracle_agreement(q_child, q_a, q_b)
    target_agreement = {"both": min(agree_a, agree_b), "a": agree_a, "b": agree_b}[target]
    bound = recombination_bound(parents_agreement, target)
    bound_fraction = target_agreement / bound
    checks["bound_fraction"] = _minimum(bound_fraction, config.min_bound_fraction)
    if target == "both":
        checks["oracle_agreement"] = _minimum(oracle, config.min_oracle_agreement)
    failed = [name for name, check in checks.items() if check["gates"] and not check["passed"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "validate-recombination",
        "passed": config.report_only or not failed,
        "failed_checks": failed,
        "checks": checks,
        "comparisons": comparisons,
        "summary": {
            "child_agrees_with_parent_a": agree_a,
            "child_agrees_with_parent_b": agree_b,
            "oracle_agreement": oracle,
            "primary_metric": min(agree_a, agree_b),
            "parents_agreement": parents_agreement,
            "target": target,
            "target_agreement": target_agreement,
            "bound": bound,
            "bound_fraction": bound_fraction,
        },
        "model_formats": {"parent_a": parent_a.format, "parent_b": parent_b.format, "child": child.format},
        "recorded_actions": recorded_action_agreement(actions, {"child": q_child, "parent_a": q_a, "parent_b": q_b}),
        "states": {"count": int(state_tensor.shape[0]), "input_dim": int(state_tensor.shape[1])},
        "thresholds": {
            "target": target,
            "min_bound_fraction": config.min_bound_fraction,
            "min_oracle_agreement": config.min_oracle_agreement,
            "min_action_agreement": config.min_action_agreement,
            "max_kl_divergence": config.max_kl_divergence,
            "max_mse": config.max_mse,
            "min_cosine_similarity": config.min_cosine_similarity,
            "gate_reference_checks": config.gate_reference_checks,
            "report_only": config.report_only,
        },
        "torch_version": torch.__version__,
    }
