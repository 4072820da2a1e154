"""Job kinds: the request body of each, built from the core config dataclasses.

A stage's defaults live once, in its ``core`` config dataclass; the params
model of its job kind copies those fields (type and default) and validates
the combination by constructing the dataclass, so the API rejects exactly
what ``core`` would. Fields naming checkpoints are listed in
``checkpoint_refs`` with the format they require, so every kind gets the same
404/422 checks before a job is queued.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic_core import PydanticCustomError

from core.crossover import CrossoverConfig
from core.distill import DistillConfig
from core.finetune import FinetuneConfig
from core.qat import QATConfig, QuantizationChoiceConfig
from core.search import SearchConfig
from core.quantize import PTQConfig
from app.schemas import ArchSchema
from core.states import DEFAULT_EVAL_STATES, DEFAULT_TRAIN_STATES, MAX_STATES, SyntheticStates, derive_seed
from core.validate import DistillationValidationConfig, QuantizedValidationConfig, RecombinationValidationConfig

CheckpointFormat = Literal["float32", "int8"]


class SyntheticStatesSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_states: int = Field(1000, ge=1, le=MAX_STATES)
    seed: int = Field(..., ge=0, le=2**32 - 1)


class StatesSpec(BaseModel):
    """Either an uploaded buffer (``{"id": ...}``) or ``{"synthetic": {"n_states", "seed"}}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"synthetic": {"n_states": 1000, "seed": 7919}}, {"id": "st_..."}]})
    id: str | None = Field(default=None, max_length=40)
    synthetic: SyntheticStatesSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StatesSpec:
        if (self.id is None) == (self.synthetic is None):
            raise PydanticCustomError("states_spec", "give exactly one of 'id' or 'synthetic'")
        return self

    def synthetic_spec(self) -> SyntheticStates | None:
        return SyntheticStates(self.synthetic.n_states, self.synthetic.seed) if self.synthetic else None


class JobParams(BaseModel):
    """Base of every job body: unknown fields are rejected, not ignored.

    ``checkpoint_refs`` maps each field naming a checkpoint to the format it
    must have (None: either); ``same_shapes`` lists fields whose networks
    must have identical tensor shapes; ``lineage_defaults`` fills a missing
    id from the lineage (``{"reference_id": ("checkpoint_id", "parent_a")}``:
    the parent A of the checkpoint); ``held_out_from`` gives a states field
    left out default synthetic states whose seed differs from the one the
    named checkpoint was trained on; ``states_fields`` the fields holding a
    ``StatesSpec``.
    """

    model_config = ConfigDict(extra="forbid")
    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {}
    same_shapes: ClassVar[tuple[str, ...]] = ()
    lineage_defaults: ClassVar[dict[str, tuple[str, str]]] = {}
    held_out_from: ClassVar[dict[str, str]] = {}
    states_fields: ClassVar[tuple[str, ...]] = ("states",)
    config_class: ClassVar[type | None] = None
    internal: ClassVar[bool] = False  # created by other jobs only; no POST route

    def config(self) -> Any:
        """The core config dataclass these params describe."""
        assert self.config_class is not None
        names = {field.name for field in dataclasses.fields(self.config_class)}
        return self.config_class(**{name: getattr(self, name) for name in names})

    @model_validator(mode="after")
    def _check_config(self) -> JobParams:
        if self.config_class is not None:
            try:
                self.config()
            except ValueError as error:
                raise PydanticCustomError("invalid_config", "{message}", {"message": str(error)}) from error
        return self


def params_model(
    name: str,
    config_class: type,
    doc: str,
    refs: dict[str, CheckpointFormat | None],
    same_shapes: tuple[str, ...] = (),
    **fields: Any,
) -> type[JobParams]:
    """A params model with ``fields`` plus every field of ``config_class`` (same type and default)."""
    hints = typing.get_type_hints(config_class)
    config_fields = {
        field.name: (hints[field.name], field.default)
        for field in dataclasses.fields(config_class)
        if field.name not in fields
    }
    model = create_model(name, __base__=JobParams, __doc__=doc, **fields, **config_fields)
    model.checkpoint_refs = refs
    model.same_shapes = same_shapes
    model.states_fields = tuple(name for name, (annotation, _) in fields.items() if annotation in (StatesSpec, StatesSpec | None))
    model.config_class = config_class
    return model


def states_field(default: SyntheticStates = DEFAULT_EVAL_STATES, purpose: str = "states to evaluate on") -> Any:
    """A states field whose default is written into the job's params, so every job records its states."""
    return (
        StatesSpec,
        Field(
            default_factory=lambda: StatesSpec(synthetic=SyntheticStatesSpec(n_states=default.n_states, seed=default.seed)),
            description=f"{purpose}; default {default.n_states} synthetic states from seed {default.seed}",
        ),
    )


def checkpoint_field(description: str, required: bool = True) -> Any:
    if required:
        return (str, Field(..., max_length=40, description=description))
    return (str | None, Field(default=None, max_length=40, description=description))


PtqParams = params_model(
    "PtqParams",
    PTQConfig,
    "Int8 post-training quantization of a float checkpoint. Static mode calibrates on `states`; "
    "fidelity vs float is measured on `eval_states`.",
    {"checkpoint_id": "float32"},
    checkpoint_id=checkpoint_field("the float checkpoint to quantize"),
    states=states_field(DEFAULT_TRAIN_STATES, "calibration states (static mode)"),
    eval_states=states_field(DEFAULT_EVAL_STATES, "held-out states the int8 model is compared on"),
)

QatParams = params_model(
    "QatParams",
    QATConfig,
    "Quantization-aware training: fine-tune a float student with fake-quantized int8 weights toward a teacher, "
    "then convert it to a real int8 checkpoint (first output; the float fake-quant checkpoint is the second).",
    {"checkpoint_id": "float32", "teacher_id": None},
    checkpoint_id=checkpoint_field("the float student to train (an int8 checkpoint is refused)"),
    teacher_id=checkpoint_field("the teacher whose Q-values are the targets (int8 is dequantized)"),
    states=states_field(DEFAULT_TRAIN_STATES, "training states"),
)

ValidateQuantizedParams = params_model(
    "ValidateQuantizedParams",
    QuantizedValidationConfig,
    "Compare an int8 checkpoint with its float original: fidelity, latency, throughput, memory and size.",
    {"float_id": "float32", "quant_id": "int8", "teacher_id": None},
    ("float_id", "quant_id"),
    float_id=checkpoint_field("the float32 checkpoint"),
    quant_id=checkpoint_field("the int8 checkpoint made from it"),
    teacher_id=checkpoint_field("optional teacher both are compared with", required=False),
    states=states_field(),
)

QuantizeParams = params_model(
    "QuantizeParams",
    QuantizationChoiceConfig,
    "PTQ, and QAT if accuracy is not good enough: tries dynamic PTQ, static PTQ, then QAT (with a teacher), "
    "and keeps the first whose top-1 agreement with the float model on `eval_states` reaches `min_agreement`.",
    {"checkpoint_id": "float32", "teacher_id": None},
    checkpoint_id=checkpoint_field("the float checkpoint to quantize"),
    teacher_id=checkpoint_field("teacher for the QAT attempt; without one QAT is skipped", required=False),
    strategy=(Literal["auto"], Field("auto", description="the order of attempts: dynamic, static, QAT")),
    states=states_field(DEFAULT_TRAIN_STATES, "calibration and QAT training states"),
    eval_states=states_field(DEFAULT_EVAL_STATES, "held-out states each attempt is judged on"),
)

CrossoverParams = params_model(
    "CrossoverParams",
    CrossoverConfig,
    "Combine two parents (float or int8, same architecture) into a float child.",
    {"parent_a_id": None, "parent_b_id": None},
    ("parent_a_id", "parent_b_id"),
    parent_a_id=checkpoint_field("parent A"),
    parent_b_id=checkpoint_field("parent B"),
    states=states_field(DEFAULT_TRAIN_STATES, "states for `aligned` mode's unit matching"),
)

FinetuneParams = params_model(
    "FinetuneParams",
    FinetuneConfig,
    "Fine-tune a child toward a frozen reference (default: its parent A), or toward both parents with "
    "`reference_b_id` and `teacher_weight_a` < 1.",
    {"checkpoint_id": None, "reference_id": None, "reference_b_id": None},
    ("checkpoint_id", "reference_id", "reference_b_id"),
    checkpoint_id=checkpoint_field("the child to fine-tune"),
    reference_id=checkpoint_field("frozen teacher; default: the child's parent A from its lineage", required=False),
    reference_b_id=checkpoint_field("second teacher for the dual-teacher loss", required=False),
    states=states_field(DEFAULT_TRAIN_STATES, "training states (a validation split is held out)"),
)

ValidateRecombinationParams = params_model(
    "ValidateRecombinationParams",
    RecombinationValidationConfig,
    "Compare a child with both parents: agreement, KL, MSE, MAE, cosine, oracle agreement.",
    {"child_id": None, "parent_a_id": None, "parent_b_id": None},
    ("child_id", "parent_a_id", "parent_b_id"),
    child_id=checkpoint_field("the child"),
    parent_a_id=checkpoint_field("parent A"),
    parent_b_id=checkpoint_field("parent B"),
    states=states_field(),
)

FinetuneParams.lineage_defaults = {"reference_id": ("checkpoint_id", "parent_a")}

DistillParams = params_model(
    "DistillParams",
    DistillConfig,
    "Distil a teacher (float or int8, dequantized) into a smaller student; a validation split of the states is held out.",
    {"teacher_id": None},
    teacher_id=checkpoint_field("the teacher (parent) network"),
    states=states_field(DEFAULT_TRAIN_STATES, "training states"),
)

ValidateDistillationParams = params_model(
    "ValidateDistillationParams",
    DistillationValidationConfig,
    "Compare a student with its teacher: agreement, KL, MSE, MAE, cosine, top-k, parameter ratio, latency, "
    "robustness slices and optional greedy rollouts on a seeded linear MDP.",
    {"student_id": None, "teacher_id": None},
    student_id=checkpoint_field("the student"),
    teacher_id=checkpoint_field("its teacher"),
    states=(
        StatesSpec | None,
        Field(
            default=None,
            description=f"held-out states; default {DEFAULT_EVAL_STATES.n_states} synthetic states from seed "
            f"{DEFAULT_EVAL_STATES.seed}, or another seed if the student was trained on that one",
        ),
    ),
)
ValidateDistillationParams.held_out_from = {"states": "student_id"}

JOB_PARAMS: dict[str, type[JobParams]] = {
    "distill": DistillParams,
    "validate-distillation": ValidateDistillationParams,
    "ptq": PtqParams,
    "qat": QatParams,
    "quantize": QuantizeParams,
    "validate-quantized": ValidateQuantizedParams,
    "crossover": CrossoverParams,
    "finetune": FinetuneParams,
    "validate-recombination": ValidateRecombinationParams,
}


PLACEHOLDER_ID = "ckpt_" + "0" * 20


@dataclass(frozen=True)
class PipelineStage:
    """One child job of the pipeline: its key, job kind, and the stages whose outputs it needs."""

    key: str
    kind: str
    after: tuple[str, ...] = ()


PIPELINE_STAGES = (
    PipelineStage("distill_a", "distill"),
    PipelineStage("distill_b", "distill"),
    PipelineStage("ptq_a", "ptq", ("distill_a",)),
    PipelineStage("ptq_b", "ptq", ("distill_b",)),
    PipelineStage("validate_distillation_a", "validate-distillation", ("distill_a",)),
    PipelineStage("validate_distillation_b", "validate-distillation", ("distill_b",)),
    PipelineStage("validate_quantized_a", "validate-quantized", ("distill_a", "ptq_a")),
    PipelineStage("validate_quantized_b", "validate-quantized", ("distill_b", "ptq_b")),
    PipelineStage("crossover", "crossover", ("distill_a", "distill_b", "ptq_a", "ptq_b")),
    PipelineStage("finetune", "finetune", ("crossover", "distill_a", "distill_b")),
    PipelineStage("validate_recombination", "validate-recombination", ("finetune", "distill_a", "distill_b")),
)
PIPELINE_KINDS = tuple(dict.fromkeys(stage.kind for stage in PIPELINE_STAGES))


class PipelineParams(JobParams):
    """The canonical dual-teacher run as one job: distil A and B, PTQ both, validate both (distillation and
    quantization), cross the students over, fine-tune the child toward both students, validate the child.

    Stages are child jobs; independent ones run in parallel. Parents are given by id or synthesised from
    `parent_seeds` with `arch`. Every stage seed derives from `seed`. `overrides` maps a stage's job kind
    to extra params for it (e.g. `{"distill": {"epochs": 25}, "finetune": {"regime": "long"}}`).
    """

    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {"parent_a_id": None, "parent_b_id": None}
    same_shapes: ClassVar[tuple[str, ...]] = ("parent_a_id", "parent_b_id")
    states_fields: ClassVar[tuple[str, ...]] = ("states", "eval_states")

    parent_a_id: str | None = Field(default=None, max_length=40, description="teacher of student A")
    parent_b_id: str | None = Field(default=None, max_length=40, description="teacher of student B")
    parent_seeds: tuple[int, int] | None = Field(default=None, description="synthesise both parents from these seeds (default (0, 1) without ids)")
    arch: ArchSchema = Field(default_factory=ArchSchema, description="architecture of synthesised parents")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="every stage's seed derives from this one")
    crossover_inputs: Literal["float", "int8"] = Field(default="float", description="cross over the float students or their int8 PTQ versions")
    states: StatesSpec = states_field(DEFAULT_TRAIN_STATES, "training states (distillation, calibration, fine-tuning)")[1]
    eval_states: StatesSpec = states_field(DEFAULT_EVAL_STATES, "held-out states every validation runs on")[1]
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict, description=f"per-stage params, keyed by job kind: {', '.join(PIPELINE_KINDS)}")

    @model_validator(mode="after")
    def _check_pipeline(self) -> PipelineParams:
        given = (self.parent_a_id is not None, self.parent_b_id is not None)
        if given[0] != given[1]:
            raise PydanticCustomError("parents", "give both parent_a_id and parent_b_id, or neither (and parent_seeds)")
        if all(given) and self.parent_seeds is not None:
            raise PydanticCustomError("parents", "give parent ids or parent_seeds, not both")
        if not any(given) and self.parent_seeds is None:
            self.parent_seeds = (0, 1)
        unknown = sorted(set(self.overrides) - set(PIPELINE_KINDS))
        if unknown:
            raise PydanticCustomError("overrides", "unknown stage kinds {unknown}; valid: {valid}", {"unknown": unknown, "valid": list(PIPELINE_KINDS)})
        placeholders = {stage.key: [PLACEHOLDER_ID, PLACEHOLDER_ID] for stage in PIPELINE_STAGES}
        for stage in PIPELINE_STAGES:
            try:
                JOB_PARAMS[stage.kind].model_validate(pipeline_stage_params(self, stage, PLACEHOLDER_ID, PLACEHOLDER_ID, placeholders))
            except ValidationError as error:
                problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
                raise PydanticCustomError("overrides", "stage {stage}: {problems}", {"stage": stage.key, "problems": problems}) from error
        return self


def pipeline_stage_params(params: PipelineParams, stage: PipelineStage, parent_a: str, parent_b: str, outputs: dict[str, list[str]]) -> dict[str, Any]:
    """The params of one pipeline stage, from the parents and the outputs of the stages it follows."""
    side = stage.key[-1]
    parent = {"a": parent_a, "b": parent_b}
    student = {"a": (outputs.get("distill_a") or [None])[0], "b": (outputs.get("distill_b") or [None])[0]}
    int8 = {"a": (outputs.get("ptq_a") or [None])[0], "b": (outputs.get("ptq_b") or [None])[0]}
    states, eval_states = params.states.model_dump(exclude_none=True), params.eval_states.model_dump(exclude_none=True)
    seed = derive_seed(params.seed, stage.key)
    base: dict[str, Any] = {
        "distill": lambda: {"teacher_id": parent[side], "states": states, "seed": seed},
        "ptq": lambda: {"checkpoint_id": student[side], "states": states, "eval_states": eval_states},
        "validate-distillation": lambda: {"student_id": student[side], "teacher_id": parent[side], "states": eval_states},
        "validate-quantized": lambda: {"float_id": student[side], "quant_id": int8[side], "teacher_id": parent[side], "states": eval_states},
        "crossover": lambda: {
            "parent_a_id": (int8 if params.crossover_inputs == "int8" else student)["a"],
            "parent_b_id": (int8 if params.crossover_inputs == "int8" else student)["b"],
            "states": states,
            "seed": seed,
        },
        "finetune": lambda: {
            "checkpoint_id": (outputs.get("crossover") or [None])[0],
            "reference_id": student["a"],
            "reference_b_id": student["b"],
            "teacher_weight_a": 0.5,
            "regime": "medium",
            "states": states,
            "seed": seed,
        },
        "validate-recombination": lambda: {
            "child_id": (outputs.get("finetune") or [None])[0],
            "parent_a_id": student["a"],
            "parent_b_id": student["b"],
            "states": eval_states,
            "include_parent_baseline": True,
        },
    }[stage.kind]()
    return base | params.overrides.get(stage.kind, {})


JOB_PARAMS["pipeline"] = PipelineParams

SearchParams = params_model(
    "SearchParams",
    SearchConfig,
    "Crossover x fine-tune search: every trial (crossover, fine-tune, evaluation on held-out states) is a child "
    "job fanned out across the workers; the report ranks children and parent baselines together by "
    "min(agreement with A, agreement with B). `scheduler: halving` runs successive halving over fine-tune epochs.",
    {"parent_a_id": None, "parent_b_id": None},
    ("parent_a_id", "parent_b_id"),
    parent_a_id=checkpoint_field("parent A (float or int8)"),
    parent_b_id=checkpoint_field("parent B (float or int8)"),
    states=(StatesSpec | None, Field(default=None, description="fine-tune states; default `n_states` synthetic states from a seed derived from `seed`")),
    n_states=(int, Field(default=1000, ge=2, le=100_000, description="synthetic fine-tune states, and the held-out evaluation states drawn apart from them")),
)


class SearchTrialParams(JobParams):
    """One trial of a search (created by the search job)."""

    internal: ClassVar[bool] = True
    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {"parent_a_id": None, "parent_b_id": None}

    parent_a_id: str = Field(..., max_length=40)
    parent_b_id: str = Field(..., max_length=40)
    search: dict[str, Any] = Field(..., description="the search's SearchConfig fields")
    trial_index: int = Field(..., ge=0)
    epochs: int = Field(..., ge=1)
    rung: int = Field(0, ge=0)
    states: StatesSpec | None = None
    n_states: int = Field(1000, ge=2, le=100_000)

    def search_config(self) -> SearchConfig:
        return SearchConfig(**self.search)


JOB_PARAMS["search"] = SearchParams
JOB_PARAMS["search-trial"] = SearchTrialParams
