"""Report bodies: one pydantic model per job kind, a discriminated union on ``kind``.

Every report has ``schema_version``, ``kind``, ``job_id``, ``passed`` and
``torch_version``. The same figure has the same name in every kind:

- ``curves``: the per-epoch training figures (distill, qat, finetune);
- ``held_out``: the figures measured on held-out states (every kind that
  measures any; evolve keeps its per-member ``fitness.report``);
- ``checks`` and ``failed_checks``: a validator's gates, at the top level of
  every kind that has them (PTQ included);
- ``child_vs_parent_a_agreement`` / ``child_vs_parent_b_agreement``: a
  child's top-1 agreement with each parent.

``figures`` (computed, never stored) is the one definition of the scalar
figures a report shows; the dashboard and the command line print it as is.
Workers validate a report against its kind's model (``report_model`` of its
``app.contracts.job_kinds.JOB_KINDS`` entry) before it is stored; migration 0004 rewrote the 1.0 reports to this shape.
"""

from __future__ import annotations

import builtins
import functools
import math
import types
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, computed_field

REPORT_SCHEMA_VERSION = "2.0"
FigureValue = float | int | str | bool | None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Figure(Strict):
    """One scalar a report shows: its dotted name within the report and its value."""

    name: str = Field(description="dotted path within the report body, e.g. `held_out.action_agreement`")
    value: FigureValue


class Check(Strict):
    """One validator gate: the measured value against its threshold."""

    value: float | bool | None
    threshold: float | bool | None
    passed: bool
    gates: bool = Field(description="false: informational only, it does not decide `passed`")


class EpochFigures(Strict):
    """One training epoch; ``epoch`` 0 is the state before training. Losses are per-sample means."""

    epoch: int
    train_loss: float
    train_soft_loss: float
    train_hard_loss: float | None
    val_loss: float | None
    action_agreement: float | None
    prob_similarity: float | None
    temperature: float | None


class Fidelity(Strict):
    """One network against a reference on held-out states."""

    n_states: int
    action_agreement: float = Field(description="top-1 action agreement, 0..1")
    kl_divergence: float
    mse: float
    mae: float
    max_abs_error: float
    mean_cosine_similarity: float
    top_k_agreements: dict[str, float]


class DistillationHeldOut(Fidelity):
    """A student against its teacher on held-out states, with sizes, latency and robustness slices."""

    param_ratio: float
    student_param_count: int
    parent_param_count: int
    student_inference_ms: float | None
    parent_inference_ms: float | None
    latency_ratio: float | None
    robustness_slice_agreements: dict[str, float]


class LatencyStats(Strict):
    mean_ms: float
    median_ms: float
    p95_ms: float
    repeats: int
    warmup: int


class Latency(Strict):
    """Single-state latency of the float and the int8 network."""

    float: LatencyStats
    quantized: LatencyStats
    latency_ratio: builtins.float = Field(description="int8 median over float median")


class Size(Strict):
    float_param_bytes: int
    quantized_param_bytes: int
    param_compression_ratio: float
    float_file_bytes: int
    quantized_file_bytes: int
    file_compression_ratio: float


class ChildVsParents(Strict):
    """A child's top-1 agreement with each parent on held-out states; ``primary_metric`` is the smaller."""

    child_vs_parent_a_agreement: float
    child_vs_parent_b_agreement: float
    primary_metric: float
    states: dict[str, Any] = Field(description="the held-out states these were measured on")


class RecombinationHeldOut(Strict):
    """A child against both parents on held-out states, with the bound a recombination can reach."""

    child_vs_parent_a_agreement: float
    child_vs_parent_b_agreement: float
    primary_metric: float
    oracle_agreement: float = Field(description="share of states where the child agrees with A or B")
    parents_agreement: float
    target: str
    target_agreement: float
    bound: float
    bound_fraction: float


class ReportBase(Strict):
    """What every report has."""

    schema_version: Literal["2.0"] = Field(description="of the report body; 2.0 since migration 0004")
    job_id: str
    passed: bool = Field(description="the job's verdict")
    torch_version: str
    # The sections whose scalars make ``figures``, each with the depth of nested sections it descends into.
    figure_sections: ClassVar[tuple[tuple[str, int], ...]] = ()

    # mypy does not follow a decorator over ``property``; pydantic documents this pairing.
    @computed_field(description="the scalar figures this report shows: its top-level scalars, then its sections'")  # type: ignore[prop-decorator]
    @property
    def figures(self) -> list[Figure]:
        body = self.model_dump(mode="json", exclude={"figures"})
        found = [
            Figure(name=name, value=value)
            for name, value in body.items()
            if name not in BOILERPLATE_FIELDS and isinstance(value, (int, float, str, bool))
        ]
        for section, depth in self.figure_sections:
            if isinstance(body.get(section), dict):
                found += [Figure(name=name, value=value) for name, value in scalars(body[section], section, depth)]
        return found


# Fields every report has: they say nothing about this one.
BOILERPLATE_FIELDS = frozenset({"schema_version", "kind", "job_id", "passed", "torch_version"})


def scalars(section: dict[str, Any], prefix: str, depth: int) -> list[tuple[str, FigureValue]]:
    """Scalar values of a section as ``(dotted.name, value)``, descending ``depth - 1`` levels of nested sections."""
    found: list[tuple[str, FigureValue]] = []
    for key, value in section.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            if depth > 1:
                found += scalars(value, name, depth - 1)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            found.append((name, value))
    return found


class ValidatorReport(ReportBase):
    """The gates every validator (and PTQ) reports."""

    failed_checks: list[str] = Field(description="the gating checks that failed")
    checks: dict[str, Check]
    thresholds: dict[str, Any]
    states: dict[str, int] = Field(description="`count` and `input_dim` of the held-out states")
    recorded_actions: dict[str, Any] | None = Field(description="agreement with the actions stored with the states")


class DistillReport(ReportBase):
    kind: Literal["distill"]
    student_id: str
    teacher_id: str
    student_arch: dict[str, Any]
    config: dict[str, Any]
    best_epoch: int
    best_val_loss: float
    selection: dict[str, float | None] = Field(description="the chosen epoch's figures on the validation split")
    held_out: Fidelity = Field(description="the student against its teacher on `eval_states`")
    states: dict[str, str] = Field(description="which states served training, selection and these figures")
    final_temperature: float
    teacher_dequantized: bool
    early_stopped: bool
    curves: list[EpochFigures]
    elapsed_seconds: float
    notes: list[str]
    figure_sections = (("held_out", 1), ("selection", 1))


class ValidateDistillationReport(ValidatorReport):
    kind: Literal["validate-distillation"]
    checkpoints: dict[str, str] = Field(description="`teacher` and `student` checkpoint ids")
    held_out: DistillationHeldOut
    label_metrics: dict[str, Any] | None
    rollout: dict[str, Any] | None
    benchmark: dict[str, Any]
    notes: list[str]
    figure_sections = (("held_out", 2),)


class QuantizedComparison(ValidatorReport):
    """An int8 network against its float original: fidelity, latency, throughput, memory and size."""

    held_out: Fidelity = Field(description="the int8 network against the float one")
    latency: Latency | None
    throughput: dict[str, Any] | None
    memory: dict[str, Any]
    size: Size
    quantization: dict[str, Any] = Field(description="the int8 scheme (and, for PTQ, how it was made)")
    teacher: dict[str, Any] | None = Field(description="both networks against a teacher, when one was given")
    benchmark: dict[str, Any]
    notes: list[str]
    figure_sections = (("held_out", 2), ("size", 1), ("latency", 2))


class ValidateQuantizedReport(QuantizedComparison):
    kind: Literal["validate-quantized"]
    checkpoints: dict[str, str | None] = Field(description="`float`, `quantized` and `teacher` checkpoint ids")


class PtqReport(QuantizedComparison):
    kind: Literal["ptq"]
    source_checkpoint_id: str
    quantized_checkpoint_id: str


class QatReport(ReportBase):
    kind: Literal["qat"]
    int8_checkpoint_id: str | None
    float_qat_checkpoint_id: str
    teacher_id: str
    student_id: str
    config: dict[str, Any]
    float_param_bytes: int
    int8_param_bytes: int | None
    best_epoch: int
    states: dict[str, str]
    best: EpochFigures | None = Field(description="the chosen epoch on the validation split")
    initial: EpochFigures | None = Field(description="before training, on the validation split")
    curves: list[EpochFigures]
    elapsed_seconds: float
    notes: list[str]
    figure_sections = (("best", 1),)


class QuantizationAttempt(Strict):
    method: str
    checkpoint_id: str | None
    selection: dict[str, Any] | None = Field(description="figures on the held-back rows of `states` that chose it")
    held_out: dict[str, Any] | None = Field(description="figures on `eval_states`")


class QuantizationDecision(QuantizationAttempt):
    kept: bool
    reason: str
    elapsed_seconds: float


class QuantizeReport(ReportBase):
    kind: Literal["quantize"]
    chosen: QuantizationAttempt
    min_agreement: float
    summary: str
    states: dict[str, str]
    decision_path: list[QuantizationDecision]
    figure_sections = (("chosen", 2),)


class CrossoverReport(ReportBase):
    kind: Literal["crossover"]
    child_id: str
    parents: dict[str, str]
    parent_formats: dict[str, str]
    config: dict[str, Any]
    sources: dict[str, str] = Field(description="which parent each tensor of the child came from")
    permutations: list[list[int]] | None
    matched_similarity: list[float] | None
    elapsed_seconds: float
    held_out: ChildVsParents = Field(description="a first look; validate-recombination gives the full picture")
    figure_sections = (("held_out", 1),)


class FinetuneReport(ReportBase):
    kind: Literal["finetune"]
    finetuned_checkpoint_id: str
    int8_checkpoint_id: str | None
    references: dict[str, str | None]
    target: str
    teacher_b_logit_scale: float | None
    config: dict[str, Any]
    before: EpochFigures | None
    after: EpochFigures | None
    best_epoch: int
    states: dict[str, str]
    early_stopped: bool
    curves: list[EpochFigures]
    elapsed_seconds: float
    figure_sections = (("after", 1),)


class ValidateRecombinationReport(ValidatorReport):
    kind: Literal["validate-recombination"]
    checkpoints: dict[str, str] = Field(description="`child`, `parent_a` and `parent_b` checkpoint ids")
    held_out: RecombinationHeldOut
    comparisons: dict[str, dict[str, Any]] = Field(description="every pair's fidelity figures")
    model_formats: dict[str, str]
    figure_sections = (("held_out", 1),)


class LeaderboardRow(BaseModel):
    """One ranked trial (or parent baseline) of a search; figures on held-out states unless named `selection_`."""

    model_config = ConfigDict(extra="allow")
    rank: int
    trial_id: str
    checkpoint_id: str | None
    primary_metric: float
    child_vs_parent_a_agreement: float
    child_vs_parent_b_agreement: float
    is_parent_baseline: bool
    degenerate: bool


class SearchReport(ReportBase):
    kind: Literal["search"]
    config: dict[str, Any]
    leaderboard: list[LeaderboardRow]
    winner: dict[str, Any] | None
    recommendation: dict[str, Any]
    manifest: list[dict[str, Any]]
    scheduler: dict[str, Any]
    failed_trials: dict[str, str]
    states: dict[str, str]
    figure_sections = (("winner", 1), ("recommendation", 1))


class SearchTrialReport(ReportBase):
    kind: Literal["search-trial"]
    child_id: str
    child_int8_id: str | None
    trial: dict[str, Any] = Field(description="the trial's spec, figures and timings, as its search reads them")


class EvolveReport(ReportBase):
    kind: Literal["evolve"]
    target_ids: list[str]
    config: dict[str, Any]
    fitness: dict[str, str] = Field(description="what fitness measures")
    generations: list[dict[str, Any]] = Field(description="per generation: best, mean, diversity and members")
    best: dict[str, Any] = Field(description="the winner; `fitness.report` is on held-out states")
    best_checkpoint_id: str
    founders_best: dict[str, Any]
    budget: dict[str, int]
    states: dict[str, str]
    figure_sections = (("best", 2), ("founders_best", 2), ("budget", 1))


class EvolveChildReport(ReportBase):
    kind: Literal["evolve-child"]
    child_id: str
    member: dict[str, Any] = Field(description="the child as its evolution reads it back")


class PipelineKeyMetrics(Strict):
    student_a_held_out_agreement: float
    student_b_held_out_agreement: float
    student_a_vs_teacher_agreement: float
    student_b_vs_teacher_agreement: float
    int8_a_vs_float_agreement: float
    int8_b_vs_float_agreement: float
    int8_a_file_compression: float
    int8_b_file_compression: float
    child_before_finetune: ChildVsParents
    child_vs_parent_a_agreement: float
    child_vs_parent_b_agreement: float
    oracle_agreement: float
    parents_agreement: float
    recombination_bound: float
    bound_fraction: float


class PipelineStageSummary(Strict):
    job_id: str
    kind: str
    status: str
    outputs: list[str]
    passed: bool | None


class PipelineReport(ReportBase):
    kind: Literal["pipeline"]
    distillation_passed: bool
    quantization_passed: bool
    recombination_passed: bool
    failed_stages: list[dict[str, Any]]
    parents: dict[str, str]
    artifacts: dict[str, str]
    stages: dict[str, PipelineStageSummary]
    key_metrics: PipelineKeyMetrics
    figure_sections = (("key_metrics", 2),)


ReportBody = Annotated[
    DistillReport
    | ValidateDistillationReport
    | PtqReport
    | QatReport
    | QuantizeReport
    | ValidateQuantizedReport
    | CrossoverReport
    | FinetuneReport
    | ValidateRecombinationReport
    | SearchReport
    | SearchTrialReport
    | EvolveReport
    | EvolveChildReport
    | PipelineReport,
    Field(discriminator="kind"),
]
REPORT_BODY: TypeAdapter[ReportBody] = TypeAdapter(ReportBody)


def parse_report(body: dict[str, Any]) -> ReportBody:
    """A stored (or about to be stored) report body as its kind's model; ``ValidationError`` if it does not fit."""
    return REPORT_BODY.validate_python(body)


def stored_body(report: ReportBase) -> dict[str, Any]:
    """What the database keeps of a report: the fields it was given (no computed ones, no defaults added)."""
    return report.model_dump(mode="json", exclude={"figures"}, exclude_unset=True)


def _numeric(annotation: Any) -> bool:
    """Whether a field holds a number (int or float, optional or not; bool is not one)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return any(option in (int, float) for option in options) and bool not in options


def _section_figure_names(model: type[BaseModel], prefix: str, depth: int) -> list[str]:
    names: list[str] = []
    for field, info in model.model_fields.items():
        if _numeric(info.annotation):
            names.append(f"{prefix}.{field}")
        elif depth > 1 and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names += _section_figure_names(info.annotation, f"{prefix}.{field}", depth - 1)
    return names


@functools.cache
def figure_names(model: type[ReportBase]) -> tuple[str, ...]:
    """The numeric figures every report of ``model`` may show, by dotted name: what lists sort and filter by.

    Read from the model's typed fields (top-level numbers, then its ``figure_sections``); figures under free-form
    sections (``dict`` fields, e.g. a search's ``winner``) have no fixed name, so they are not among them.
    """
    names = [
        name
        for name, info in model.model_fields.items()
        if name not in BOILERPLATE_FIELDS and _numeric(info.annotation)
    ]
    for section, depth in model.figure_sections:
        annotation = model.model_fields[section].annotation
        options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
        for option in options:
            if isinstance(option, type) and issubclass(option, BaseModel):
                names += _section_figure_names(option, section, depth)
    return tuple(names)


def numeric_figures(report: ReportBase) -> dict[str, float]:
    """The report's figures named by ``figure_names`` that have a finite value: what ``report_figures`` stores."""
    names = set(figure_names(type(report)))
    return {
        figure.name: float(figure.value)
        for figure in report.figures
        if figure.name in names
        and isinstance(figure.value, (int, float))
        and not isinstance(figure.value, bool)
        and math.isfinite(figure.value)
    }
