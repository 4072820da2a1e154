"""The architecture a job or an upload names, as JSON: validated here, turned into ``core.arch.QNetworkArch``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.arch import MAX_HIDDEN_LAYERS, MAX_WIDTH, PARENT_DROPOUT, Activation, Norm, QNetworkArch


class ArchSchema(BaseModel):
    """An MLP Q-network: ``hidden_sizes`` widths, each a Linear, optional LayerNorm, activation and dropout.

    The defaults are the reference layout (8-64-64-4, LayerNorm, ReLU,
    dropout 0.1). ``hidden_size`` is shorthand for two equal layers.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input_dim": 8,
                    "hidden_sizes": [64, 64],
                    "output_dim": 4,
                    "norm": "layernorm",
                    "activation": "relu",
                    "dropout_rate": 0.1,
                }
            ]
        },
    )
    input_dim: int = Field(8, ge=1, le=MAX_WIDTH, description="width of a state (observation)")
    hidden_sizes: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_HIDDEN_LAYERS,
        description=f"1-{MAX_HIDDEN_LAYERS} widths in [1, {MAX_WIDTH}]; default [64, 64]",
    )
    hidden_size: int | None = Field(default=None, ge=1, le=MAX_WIDTH, description="shorthand for hidden_sizes [h, h]")
    output_dim: int = Field(4, ge=1, le=MAX_WIDTH, description="actions: one Q-value each")
    norm: Norm = Field("layernorm", description="normalisation after each hidden Linear")
    activation: Activation = Field("relu", description="activation of each hidden layer")
    dropout_rate: float = Field(PARENT_DROPOUT, ge=0.0, lt=1.0, description="dropout after each hidden layer")

    @model_validator(mode="after")
    def _one_width_form(self) -> ArchSchema:
        if self.hidden_size is not None and self.hidden_sizes is not None:
            raise PydanticCustomError("arch", "give hidden_sizes or hidden_size (two equal layers), not both")
        return self

    def to_arch(self) -> QNetworkArch:
        widths = self.hidden_sizes or ([self.hidden_size] * 2 if self.hidden_size else [64, 64])
        return QNetworkArch(
            self.input_dim, tuple(widths), self.output_dim, self.norm, self.activation, self.dropout_rate
        )
