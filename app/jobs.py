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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from core.quantize import PTQConfig
from core.states import DEFAULT_EVAL_STATES, MAX_STATES, SyntheticStates

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
    """Base of every job body: unknown fields are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid")
    checkpoint_refs: ClassVar[dict[str, CheckpointFormat | None]] = {}
    config_class: ClassVar[type | None] = None

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


def params_model(name: str, config_class: type, doc: str, refs: dict[str, CheckpointFormat | None], **fields: Any) -> type[JobParams]:
    """A params model with ``fields`` plus every field of ``config_class`` (same type and default)."""
    hints = typing.get_type_hints(config_class)
    config_fields = {
        field.name: (hints[field.name], field.default)
        for field in dataclasses.fields(config_class)
        if field.name not in fields
    }
    model = create_model(name, __base__=JobParams, __doc__=doc, **fields, **config_fields)
    model.checkpoint_refs = refs
    model.config_class = config_class
    return model


def states_field(default: SyntheticStates = DEFAULT_EVAL_STATES) -> Any:
    """A ``states`` field whose default is written into the job's params, so every job records its states."""
    return (
        StatesSpec,
        Field(
            default_factory=lambda: StatesSpec(synthetic=SyntheticStatesSpec(n_states=default.n_states, seed=default.seed)),
            description=f"states to use; default {default.n_states} synthetic states from seed {default.seed}",
        ),
    )


PtqParams = params_model(
    "PtqParams",
    PTQConfig,
    "Int8 post-training quantization of a float checkpoint; fidelity vs float is measured on `states`.",
    {"checkpoint_id": "float32"},
    checkpoint_id=(str, Field(..., max_length=40, description="the float checkpoint to quantize")),
    states=states_field(),
)

JOB_PARAMS: dict[str, type[JobParams]] = {
    "ptq": PtqParams,
}
