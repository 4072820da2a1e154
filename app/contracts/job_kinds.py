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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from app.contracts import report_models
from app.contracts.arch_schema import ArchSchema
from app.contracts.job_fields import documented_field
from app.contracts.labels import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_DESCRIPTION,
    NAME_DESCRIPTION,
    TAGS_DESCRIPTION,
    Experiment,
    Name,
    Tags,
)
from app.contracts.model_refs import CHECKPOINT_REF_DESCRIPTION, CHECKPOINT_REF_MAX_LENGTH
from core import work
from core.arch import QNetworkArch
from core.configs import (
    DEFAULT_EVAL_STATES,
    DEFAULT_TRAIN_STATES,
    MAX_FOUNDERS,
    MAX_TARGETS,
    MIN_FOUNDERS,
    CrossoverConfig,
    DistillationValidationConfig,
    DistillConfig,
    EvolveConfig,
    FinetuneConfig,
    PTQConfig,
    QATConfig,
    QuantizationChoiceConfig,
    QuantizedValidationConfig,
    RecombinationValidationConfig,
    SearchConfig,
    SyntheticStates,
    declared_bounds,
    derive_seed,
)

CheckpointFormat = Literal["float32", "int8"]

ModelT = TypeVar("ModelT", bound=BaseModel)


# The synthetic states a search or an evolution draws (its trial and child jobs take the same count).
DERIVED_STATES_BOUNDS: dict[str, Any] = {"ge": 2, "le": 100_000}
_SYNTHETIC_BOUNDS: dict[str, dict[str, Any]] = {
    name: dict(bounds) for name, bounds in declared_bounds(SyntheticStates).items()
}


class SyntheticStatesSpec(BaseModel):
    """``core.configs.SyntheticStates`` as JSON; its bounds are the ones core declares."""

    model_config = ConfigDict(extra="forbid")
    n_states: int = Field(1000, description="rows to draw", **_SYNTHETIC_BOUNDS["n_states"])
    seed: int = Field(
        ...,
        description="seed of the draw: the same seed gives the same states",
        **_SYNTHETIC_BOUNDS["seed"],
    )


class StatesSpec(BaseModel):
    """Either an uploaded buffer (``{"id": ...}``) or ``{"synthetic": {"n_states", "seed"}}``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"synthetic": {"n_states": 1000, "seed": 7919}}, {"id": "st_..."}]},
    )
    id: str | None = Field(default=None, max_length=40, description="an uploaded state buffer (POST /states)")
    synthetic: SyntheticStatesSpec | None = Field(default=None, description="states drawn by the service")

    @model_validator(mode="after")
    def _exactly_one(self) -> StatesSpec:
        if (self.id is None) == (self.synthetic is None):
            raise PydanticCustomError("states_spec", "give exactly one of 'id' or 'synthetic'")
        return self

    def synthetic_spec(self) -> SyntheticStates | None:
        return SyntheticStates(self.synthetic.n_states, self.synthetic.seed) if self.synthetic else None


class JobParams(BaseModel):
    """Base of every job body: unknown fields are rejected, not ignored; validated params are frozen.

    ``checkpoint_refs`` maps each field naming a checkpoint to the format it
    must have (None: either), ``checkpoint_list_refs`` the same for fields
    holding a list of ids (the networks of the first such field must all share
    one architecture); ``same_shapes`` lists fields whose networks
    must have identical tensor shapes; ``lineage_defaults`` fills a missing
    id from the lineage (``{"reference_id": ("checkpoint_id", "parent_a")}``:
    the parent A of the checkpoint); ``held_out_from`` gives a states field
    left out default synthetic states whose seed differs from the one the
    named checkpoint was trained on; ``states_fields`` the fields holding a
    ``StatesSpec``. Fields filled in before queueing are set with
    ``with_resolved``, which keeps the config built at validation.

    ``name``, ``experiment`` and ``tags`` (``LABEL_FIELDS``) file the job;
    they are stored on the job row, never in its params, and never reach the
    stage's config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name | None = Field(default=None, description=f"the job's name: {NAME_DESCRIPTION}")
    experiment: Experiment = Field(default=DEFAULT_EXPERIMENT, description=EXPERIMENT_DESCRIPTION)
    tags: Tags = Field(default_factory=list, description=TAGS_DESCRIPTION)
    LABEL_FIELDS: ClassVar[frozenset[str]] = frozenset({"name", "experiment", "tags"})
    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {}
    checkpoint_list_refs: ClassVar[dict[str, CheckpointFormat | None]] = {}
    same_shapes: ClassVar[tuple[str, ...]] = ()
    lineage_defaults: ClassVar[dict[str, tuple[str, str]]] = {}
    held_out_from: ClassVar[dict[str, str]] = {}
    states_fields: ClassVar[tuple[str, ...]] = ("states",)
    config_class: ClassVar[type | None] = None
    # Built once, when the params are validated: the route, the runner and the task share it.
    _config: Any = PrivateAttr(default=None)

    def new_archs(self, archs: dict[str, QNetworkArch]) -> list[QNetworkArch]:
        """Architectures of networks this job creates that its inputs do not bound (checked against the parameter cap).

        ``archs`` maps each checkpoint field to its network's architecture.
        ``ValueError`` for a combination the job cannot build.
        """
        return []

    def stored_params(self) -> dict[str, Any]:
        """What the job row stores as its params: every field but the labels, as JSON values."""
        return self.model_dump(mode="json", exclude_none=True, exclude=set(self.LABEL_FIELDS))

    def config(self) -> Any:
        """The core config dataclass these params describe, built once when they were validated."""
        assert self._config is not None, f"{type(self).__name__} has no core config"
        return self._config

    def with_resolved(self, **values: Any) -> Self:
        """A copy with input fields filled in (ids, states); config fields may not change, so the config holds."""
        changed_config_fields = sorted(set(values) & _config_field_names(self.config_class))
        if changed_config_fields:
            raise ValueError(f"config fields {changed_config_fields} cannot change after validation")
        return self.model_copy(update=values)

    @model_validator(mode="after")
    def _check_config(self) -> Self:
        if self.config_class is not None:
            names = _config_field_names(self.config_class)
            try:
                self._config = self.config_class(**{name: _core_value(getattr(self, name)) for name in names})
            except ValueError as error:
                raise PydanticCustomError("invalid_config", "{message}", {"message": str(error)}) from error
        return self


class ConfigBody(BaseModel):
    """A core config dataclass nested in a job body (e.g. quantize's ``ptq``), documented field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    config_class: ClassVar[type]

    def config(self) -> Any:
        return self.config_class(**{name: _core_value(getattr(self, name)) for name in type(self).model_fields})


def _core_value(value: Any) -> Any:
    return value.config() if isinstance(value, ConfigBody) else value


def _config_field_definitions(config_class: type, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``(annotation, FieldInfo)`` of every field of ``config_class``: its default, description and bounds.

    A field that is itself a config dataclass becomes a ``ConfigBody`` model of it.
    """
    hints = typing.get_type_hints(config_class)
    definitions: dict[str, Any] = {}
    for field in dataclasses.fields(config_class):
        if field.name in exclude:
            continue
        hint = hints[field.name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{config_class.__name__}.{field.name} needs a default to be a job field")
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            body = _model_class(
                f"{hint.__name__}Body",
                ConfigBody,
                hint.__doc__,
                {"config_class": hint},
                _config_field_definitions(hint),
            )
            hint, default = body, body.model_validate(dataclasses.asdict(default))
        definitions[field.name] = documented_field(config_class, field.name, hint, default)
    return definitions


def _config_field_names(config_class: type | None) -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(config_class)) if config_class else frozenset()


def params_model(
    name: str,
    config_class: type,
    doc: str,
    refs: dict[str, CheckpointFormat | None],
    same_shapes: tuple[str, ...] = (),
    *,
    list_refs: dict[str, CheckpointFormat | None] | None = None,
    lineage_defaults: dict[str, tuple[str, str]] | None = None,
    held_out_from: dict[str, str] | None = None,
    new_archs: Callable[[Any, dict[str, QNetworkArch]], list[QNetworkArch]] | None = None,
    **fields: Any,
) -> type[JobParams]:
    """A params model with ``fields`` plus every field of ``config_class`` (same type and default).

    The keyword-only arguments are the ``JobParams`` class settings of the
    same names (``list_refs``: ``checkpoint_list_refs``); ``new_archs``
    replaces ``JobParams.new_archs``.
    """
    config_fields = _config_field_definitions(config_class, exclude=fields)
    settings: dict[str, Any] = {
        "checkpoint_refs": refs,
        "checkpoint_list_refs": list_refs or {},
        "same_shapes": same_shapes,
        "lineage_defaults": lineage_defaults or {},
        "held_out_from": held_out_from or {},
        "states_fields": tuple(
            name for name, (annotation, _) in fields.items() if annotation in (StatesSpec, StatesSpec | None)
        ),
        "config_class": config_class,
    }
    if new_archs is not None:
        settings["new_archs"] = new_archs
    return _model_class(name, JobParams, doc, settings, fields | config_fields)


def _model_class(
    name: str, base: type[ModelT], doc: str | None, class_settings: dict[str, Any], fields: dict[str, Any]
) -> type[ModelT]:
    """A subclass of ``base`` with ``fields`` (name: ``(annotation, FieldInfo)``) and class-level settings.

    What ``create_model`` does, written out because its ``__namespace__`` argument is newer than the
    pydantic this project supports.
    """
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": doc,
        "__annotations__": {field: annotation for field, (annotation, _) in fields.items()},
        **{field: info for field, (_, info) in fields.items()},
        **class_settings,
    }
    metaclass: Any = type(base)  # pydantic's, which builds the fields
    return typing.cast(type[ModelT], metaclass(name, (base,), namespace))


def states_field(default: SyntheticStates = DEFAULT_EVAL_STATES, purpose: str = "states to evaluate on") -> Any:
    """A states field whose default is written into the job's params, so every job records its states."""
    return (
        StatesSpec,
        Field(
            default_factory=lambda: StatesSpec(
                synthetic=SyntheticStatesSpec(n_states=default.n_states, seed=default.seed)
            ),
            description=f"{purpose}; default {default.n_states} synthetic states from seed {default.seed}",
        ),
    )


def checkpoint_field(description: str, required: bool = True) -> Any:
    """A field naming a checkpoint: its id, or a registered model's version (``model@alias``, ``model@3``)."""
    description = f"{description}; {CHECKPOINT_REF_DESCRIPTION}"
    if required:
        return (str, Field(..., max_length=CHECKPOINT_REF_MAX_LENGTH, description=description))
    return (str | None, Field(default=None, max_length=CHECKPOINT_REF_MAX_LENGTH, description=description))


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
    lineage_defaults={"reference_id": ("checkpoint_id", "parent_a")},
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


def _student_arch(params: Any, archs: dict[str, QNetworkArch]) -> list[QNetworkArch]:
    """A student's widths may be set per layer (up to 4096 each): bound it like any new network."""
    return [params.config().student_arch(archs["teacher_id"])]


DistillParams = params_model(
    "DistillParams",
    DistillConfig,
    "Distil a teacher (float or int8, dequantized) into a smaller student; a validation split of the states is held "
    "out.",
    {"teacher_id": None},
    new_archs=_student_arch,
    teacher_id=checkpoint_field("the teacher (parent) network"),
    states=states_field(DEFAULT_TRAIN_STATES, "training states; a validation split of them chooses the best epoch"),
    eval_states=states_field(
        DEFAULT_EVAL_STATES, "held-out states the report's agreement with the teacher is measured on"
    ),
)

ValidateDistillationParams = params_model(
    "ValidateDistillationParams",
    DistillationValidationConfig,
    "Compare a student with its teacher: agreement, KL, MSE, MAE, cosine, top-k, parameter ratio, latency, "
    "robustness slices and optional greedy rollouts on a seeded linear MDP.",
    {"student_id": None, "teacher_id": None},
    held_out_from={"states": "student_id"},
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


ParentSeed = Annotated[int, Field(ge=0, le=2**63 - 1)]


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
    stages: ClassVar[tuple[PipelineStage, ...]] = PIPELINE_STAGES

    parent_a_id: str | None = Field(
        default=None,
        max_length=CHECKPOINT_REF_MAX_LENGTH,
        description=f"teacher of student A; {CHECKPOINT_REF_DESCRIPTION}",
    )
    parent_b_id: str | None = Field(
        default=None,
        max_length=CHECKPOINT_REF_MAX_LENGTH,
        description=f"teacher of student B; {CHECKPOINT_REF_DESCRIPTION}",
    )
    parent_seeds: tuple[ParentSeed, ParentSeed] | None = Field(
        default=None, description="synthesise both parents from these seeds (default (0, 1) without ids)"
    )
    arch: ArchSchema = Field(default_factory=ArchSchema, description="architecture of synthesised parents")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="every stage's seed derives from this one")
    crossover_inputs: Literal["float", "int8"] = Field(
        default="float", description="cross over the float students or their int8 PTQ versions"
    )
    states: StatesSpec = states_field(DEFAULT_TRAIN_STATES, "training states (distillation, calibration, fine-tuning)")[
        1
    ]
    eval_states: StatesSpec = states_field(DEFAULT_EVAL_STATES, "held-out states every validation runs on")[1]
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description=f"per-stage params, keyed by job kind: {', '.join(PIPELINE_KINDS)}"
    )

    def new_archs(self, archs: dict[str, QNetworkArch]) -> list[QNetworkArch]:
        return [self.arch.to_arch()] if self.parent_seeds is not None else []

    @model_validator(mode="before")
    @classmethod
    def _default_parent_seeds(cls, data: Any) -> Any:
        """Without parent ids, the parents are synthesised from seeds (0, 1) unless given."""
        if isinstance(data, dict) and not {"parent_a_id", "parent_b_id", "parent_seeds"} & data.keys():
            return data | {"parent_seeds": (0, 1)}
        return data

    @model_validator(mode="after")
    def _check_pipeline(self) -> PipelineParams:
        given = (self.parent_a_id is not None, self.parent_b_id is not None)
        if given[0] != given[1]:
            raise PydanticCustomError("parents", "give both parent_a_id and parent_b_id, or neither (and parent_seeds)")
        if all(given) and self.parent_seeds is not None:
            raise PydanticCustomError("parents", "give parent ids or parent_seeds, not both")
        if not any(given) and self.parent_seeds is None:
            raise PydanticCustomError("parents", "give parent_a_id and parent_b_id, or parent_seeds")
        unknown = sorted(set(self.overrides) - set(PIPELINE_KINDS))
        if unknown:
            raise PydanticCustomError(
                "overrides",
                "unknown stage kinds {unknown}; valid: {valid}",
                {"unknown": unknown, "valid": list(PIPELINE_KINDS)},
            )
        for stage in PIPELINE_STAGES:
            try:
                self.placeholder_stage(stage)
            except ValidationError as error:
                problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
                raise PydanticCustomError(
                    "overrides", "stage {stage}: {problems}", {"stage": stage.key, "problems": problems}
                ) from error
        return self

    def placeholder_stage(self, stage: PipelineStage) -> JobParams:
        """A stage's validated params with every checkpoint a placeholder id: its checks and work before any run."""
        placeholders = {each.key: [PLACEHOLDER_ID, PLACEHOLDER_ID] for each in PIPELINE_STAGES}
        params = self.stage_params(stage, PLACEHOLDER_ID, PLACEHOLDER_ID, placeholders)
        return JOB_KINDS[stage.kind].params.model_validate(params)

    def stage_params(
        self, stage: PipelineStage, parent_a: str, parent_b: str, outputs: dict[str, list[str]]
    ) -> dict[str, Any]:
        """The params of one stage, from the parents and the outputs of the stages it follows."""

        def first_output(key: str) -> str | None:
            return outputs[key][0] if outputs.get(key) else None

        side = stage.key[-1]
        parent = {"a": parent_a, "b": parent_b}
        student = {"a": first_output("distill_a"), "b": first_output("distill_b")}
        int8 = {"a": first_output("ptq_a"), "b": first_output("ptq_b")}
        states, eval_states = (
            self.states.model_dump(exclude_none=True),
            self.eval_states.model_dump(exclude_none=True),
        )
        seed = derive_seed(self.seed, stage.key)
        base: dict[str, Callable[[], dict[str, Any]]] = {
            "distill": lambda: {"teacher_id": parent[side], "states": states, "seed": seed},
            "ptq": lambda: {"checkpoint_id": student[side], "states": states, "eval_states": eval_states},
            "validate-distillation": lambda: {
                "student_id": student[side],
                "teacher_id": parent[side],
                "states": eval_states,
            },
            "validate-quantized": lambda: {
                "float_id": student[side],
                "quant_id": int8[side],
                "teacher_id": parent[side],
                "states": eval_states,
            },
            "crossover": lambda: {
                "parent_a_id": (int8 if self.crossover_inputs == "int8" else student)["a"],
                "parent_b_id": (int8 if self.crossover_inputs == "int8" else student)["b"],
                "states": states,
                "seed": seed,
            },
            "finetune": lambda: {
                "checkpoint_id": first_output("crossover"),
                "reference_id": student["a"],
                "reference_b_id": student["b"],
                "teacher_weight_a": 0.5,
                "regime": "medium",
                "states": states,
                "seed": seed,
            },
            "validate-recombination": lambda: {
                "child_id": first_output("finetune"),
                "parent_a_id": student["a"],
                "parent_b_id": student["b"],
                "states": eval_states,
            },
        }
        return base[stage.kind]() | self.overrides.get(stage.kind, {})


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
    states=(
        StatesSpec | None,
        Field(
            default=None,
            description="fine-tune states; default `n_states` synthetic states from a seed derived from `seed`",
        ),
    ),
    n_states=(
        int,
        Field(
            default=1000,
            **DERIVED_STATES_BOUNDS,
            description="synthetic fine-tune states, and the held-out evaluation states drawn apart from them",
        ),
    ),
)


class SearchTrialParams(JobParams):
    """One trial of a search (created by the search job)."""

    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {"parent_a_id": None, "parent_b_id": None}

    parent_a_id: str = Field(..., max_length=40)
    parent_b_id: str = Field(..., max_length=40)
    search: dict[str, Any] = Field(..., description="the search's SearchConfig fields")
    trial_index: int = Field(..., ge=0)
    epochs: int = Field(..., ge=1)
    rung: int = Field(0, ge=0)
    states: StatesSpec | None = None
    n_states: int = Field(1000, **DERIVED_STATES_BOUNDS)

    def search_config(self) -> SearchConfig:
        return SearchConfig(**self.search)


@dataclass(frozen=True)
class JobInputs:
    """What a job's work estimate needs to know of its inputs: each named checkpoint's architecture, and the rows of a
    states spec.
    """

    archs: dict[str, QNetworkArch]
    rows_of: Callable[[StatesSpec], int]


def _pipeline_work(params: PipelineParams, inputs: JobInputs) -> work.Work:
    """Every stage's work; a stage's ``teacher_id`` is a parent, every other network it names a student."""
    parent = inputs.archs.get("parent_a_id") or params.arch.to_arch()
    stages = {stage.key: params.placeholder_stage(stage) for stage in PIPELINE_STAGES}
    student = stages["distill_a"].config().student_arch(parent)
    works = []
    for stage in PIPELINE_STAGES:
        stage_params = stages[stage.key]
        archs = {field: parent if field == "teacher_id" else student for field in stage_params.checkpoint_refs}
        works.append(JOB_KINDS[stage.kind].estimate_work(stage_params, JobInputs(archs, inputs.rows_of)))
    return work.total(works, f"pipeline: {len(works)} stages, e.g. {works[0].detail}")


def _crossover_work(params: Any, inputs: JobInputs) -> work.Work:
    arch = inputs.archs["parent_a_id"]
    first_look = work.validate_recombination(
        arch, DEFAULT_EVAL_STATES.n_states
    )  # the report's agreement on held-out states
    return work.crossover(arch, inputs.rows_of(params.states), params.config()) + first_look


def evolve_target_ids(params: Any) -> list[str]:
    """The checkpoints fitness rewards: ``targets``, or the founders."""
    return list(params.targets) if params.targets else list(params.population)


def _check_evolve(params: Any, archs: dict[str, QNetworkArch]) -> list[QNetworkArch]:
    """Founders of one architecture, targets with their input and output sizes, and at most two targets."""
    if params.targets is None and len(params.population) > MAX_TARGETS:
        raise ValueError(
            f"targets is required with more than {MAX_TARGETS} founders (the fine-tune loss takes one or two "
            f"teachers); name the one or two checkpoints fitness rewards"
        )
    founder = archs["population[0]"]
    for field, arch in archs.items():
        if field.startswith("targets") and (arch.input_dim, arch.output_dim) != (founder.input_dim, founder.output_dim):
            raise ValueError(
                f"{field} is {arch.describe()} but the founders are {founder.describe()}: input/output sizes differ"
            )
    return []


EvolveParams = params_model(
    "EvolveParams",
    EvolveConfig,
    "Recombination across generations: generation 0 is `population`; each later generation keeps the `elite` "
    "best unchanged and breeds the rest by tournament selection, crossover (a mode from `crossover_modes`), "
    "Gaussian mutation and a fine-tune toward `targets`. Every child is a child job spread over the workers; "
    "fitness chooses on selection states and is reported on held-out evaluation states.",
    {},
    list_refs={"population": None, "targets": None},
    new_archs=_check_evolve,
    population=(
        list[Annotated[str, Field(max_length=CHECKPOINT_REF_MAX_LENGTH)]],
        Field(
            ...,
            min_length=MIN_FOUNDERS,
            max_length=MAX_FOUNDERS,
            description="founders: checkpoints of one architecture, float or int8, each an id or `model@alias`",
        ),
    ),
    targets=(
        list[Annotated[str, Field(max_length=CHECKPOINT_REF_MAX_LENGTH)]] | None,
        Field(
            default=None,
            min_length=1,
            max_length=MAX_TARGETS,
            description="checkpoints whose behaviour fitness rewards (one or two: the fine-tune loss takes one "
            "or two teachers); default: the founders, when there are two",
        ),
    ),
    states=(
        StatesSpec | None,
        Field(
            default=None,
            description="fine-tune states; default `n_states` synthetic states from a seed derived from `seed`",
        ),
    ),
    eval_states=(
        StatesSpec | None,
        Field(
            default=None,
            description="held-out states every reported fitness is measured on; default `n_states` synthetic "
            "states from a seed derived from `seed`, apart from the selection states",
        ),
    ),
    n_states=(
        int,
        Field(
            default=1000,
            **DERIVED_STATES_BOUNDS,
            description="synthetic fine-tune, selection and evaluation states (each set drawn apart)",
        ),
    ),
)


class EvolveChildParams(JobParams):
    """One child of an evolution (created by the evolve job): crossover, mutation, fine-tune, fitness."""

    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {"parent_a_id": None, "parent_b_id": None}
    states_fields: ClassVar[tuple[str, ...]] = ("states", "eval_states")

    parent_a_id: str = Field(..., max_length=40)
    parent_b_id: str = Field(..., max_length=40)
    target_ids: list[Annotated[str, Field(max_length=40)]] = Field(..., min_length=1, max_length=MAX_TARGETS)
    evolve: dict[str, Any] = Field(..., description="the evolution's EvolveConfig fields")
    child: dict[str, Any] = Field(..., description="the child's ChildSpec")
    states: StatesSpec | None = None
    eval_states: StatesSpec | None = None
    n_states: int = Field(1000, **DERIVED_STATES_BOUNDS)

    def evolve_config(self) -> EvolveConfig:
        return EvolveConfig(**self.evolve)


def _evolve_work(params: Any, inputs: JobInputs) -> work.Work:
    """Every child of every generation: crossover, fine-tune and scoring on the three state sets."""
    config = params.config()
    arch = inputs.archs["population[0]"]
    train_rows = inputs.rows_of(params.states) if params.states else params.n_states
    eval_rows = inputs.rows_of(params.eval_states) if params.eval_states else params.n_states
    n_targets = len(evolve_target_ids(params))
    per_child = (
        work.crossover(arch, train_rows, CrossoverConfig(mode="aligned"))
        + work.finetune(arch, train_rows, config.finetune_config(n_targets, seed=0))
        + work.forward(arch, 2 * (params.n_states + eval_rows))
    )
    children = (config.population_size - config.elite) * config.generations
    return work.total(
        [per_child] * children,
        f"evolve: {children} children ({config.generations} generations of {config.population_size - config.elite})",
    )


WorkEstimate = Callable[[Any, JobInputs], work.Work]


@dataclass(frozen=True)
class JobKind:
    """Everything one job kind promises: its body, the lineage its outputs record, how it runs, what it reports.

    ``params`` validates the job body; ``lineage_roles`` are the roles its
    outputs may name their parents by (any other is refused when the output
    is added); ``estimate`` gives its ``core.work`` estimate its cost before it is queued (None: counted
    in the parent job that creates it); an ``internal`` kind is created by
    other jobs only and has no POST route; a ``composite`` kind runs as child
    jobs and may store outputs before it succeeds. ``report_model`` is the
    typed body of its report (``app.contracts.report_models``): a worker stores no report
    that does not fit it. The handler that runs it lives in the worker and
    registers itself for the kind with ``worker.runner.handles``.
    """

    name: str
    params: type[JobParams]
    description: str
    lineage_roles: frozenset[str] = frozenset()
    estimate: WorkEstimate | None = None
    internal: bool = False
    composite: bool = False
    report_model: type[report_models.ReportBase] = dataclasses.field(kw_only=True)

    def estimate_work(self, params: JobParams, inputs: JobInputs) -> work.Work:
        assert self.estimate is not None, f"{self.name} jobs are counted in the job that creates them"
        return self.estimate(params, inputs)


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            "distill",
            DistillParams,
            "distil a teacher into a smaller student",
            frozenset({"teacher"}),
            lambda p, i: work.distill(i.archs["teacher_id"], i.rows_of(p.states), p.config(), i.rows_of(p.eval_states)),
            report_model=report_models.DistillReport,
        ),
        JobKind(
            "validate-distillation",
            ValidateDistillationParams,
            "compare a student with its teacher",
            estimate=lambda p, i: work.validate_distillation(
                i.archs["teacher_id"], i.archs["student_id"], i.rows_of(p.states), p.config()
            ),
            report_model=report_models.ValidateDistillationReport,
        ),
        JobKind(
            "ptq",
            PtqParams,
            "int8 post-training quantization",
            frozenset({"source"}),
            lambda p, i: work.ptq(i.archs["checkpoint_id"], i.rows_of(p.states), i.rows_of(p.eval_states), p.config()),
            report_model=report_models.PtqReport,
        ),
        JobKind(
            "qat",
            QatParams,
            "quantization-aware training toward a teacher",
            frozenset({"source", "teacher"}),
            lambda p, i: work.qat(i.archs["checkpoint_id"], i.archs["teacher_id"], i.rows_of(p.states), p.config()),
            report_model=report_models.QatReport,
        ),
        JobKind(
            "quantize",
            QuantizeParams,
            "PTQ, then QAT if agreement falls short",
            frozenset({"source", "teacher"}),
            lambda p, i: work.choose_quantization(
                i.archs["checkpoint_id"],
                i.archs.get("teacher_id"),
                i.rows_of(p.states),
                i.rows_of(p.eval_states),
                p.config(),
            ),
            report_model=report_models.QuantizeReport,
        ),
        JobKind(
            "validate-quantized",
            ValidateQuantizedParams,
            "compare an int8 checkpoint with its float original",
            estimate=lambda p, i: work.validate_quantized(
                i.archs["float_id"], i.rows_of(p.states), p.config(), i.archs.get("teacher_id")
            ),
            report_model=report_models.ValidateQuantizedReport,
        ),
        JobKind(
            "crossover",
            CrossoverParams,
            "combine two parents into a child",
            frozenset({"parent_a", "parent_b"}),
            _crossover_work,
            report_model=report_models.CrossoverReport,
        ),
        JobKind(
            "finetune",
            FinetuneParams,
            "fine-tune a child toward one or two frozen teachers",
            frozenset({"source", "reference", "reference_b"}),
            lambda p, i: work.finetune(i.archs["checkpoint_id"], i.rows_of(p.states), p.config()),
            report_model=report_models.FinetuneReport,
        ),
        JobKind(
            "validate-recombination",
            ValidateRecombinationParams,
            "compare a child with both parents",
            estimate=lambda p, i: work.validate_recombination(i.archs["child_id"], i.rows_of(p.states), p.config()),
            report_model=report_models.ValidateRecombinationReport,
        ),
        JobKind(
            "pipeline",
            PipelineParams,
            "the dual-teacher run (distil, quantize, validate, cross over, fine-tune) as child jobs",
            estimate=_pipeline_work,
            composite=True,
            report_model=report_models.PipelineReport,
        ),
        JobKind(
            "search",
            SearchParams,
            "crossover x fine-tune search, one child job per trial",
            estimate=lambda p, i: work.search(
                p.config(), i.archs["parent_a_id"], i.rows_of(p.states) if p.states else p.n_states, p.n_states
            ),
            composite=True,
            report_model=report_models.SearchReport,
        ),
        JobKind(
            "search-trial",
            SearchTrialParams,
            "one trial of a search",
            frozenset({"parent_a", "parent_b", "source"}),
            internal=True,
            report_model=report_models.SearchTrialReport,
        ),
        JobKind(
            "evolve",
            EvolveParams,
            "recombination across generations, one child job per child",
            estimate=_evolve_work,
            composite=True,
            report_model=report_models.EvolveReport,
        ),
        JobKind(
            "evolve-child",
            EvolveChildParams,
            "one child of an evolution",
            frozenset({"parent_a", "parent_b"}),
            internal=True,
            report_model=report_models.EvolveChildReport,
        ),
    )
}
PUBLIC_KINDS = tuple(name for name, kind in JOB_KINDS.items() if not kind.internal)
