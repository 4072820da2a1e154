"""Registry names, and ``name@alias`` / ``name@3`` references to a registered model's version.

A model name is 1-64 characters of letters, digits, ``.``, ``_`` and ``-``,
starting with a letter or digit (never ``@``, which separates it from the
alias). An alias follows the same rule but starts with a letter, so
``name@3`` is always version 3 and never an alias called "3".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_NAME_MAX_LENGTH = 64
ALIAS_MAX_LENGTH = 64
MODEL_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_NAME_MAX_LENGTH - 1}}}$"
ALIAS_PATTERN = rf"^[A-Za-z][A-Za-z0-9._-]{{0,{ALIAS_MAX_LENGTH - 1}}}$"
# Longest of a checkpoint id (40) and ``name@alias``: what every field naming a checkpoint accepts.
CHECKPOINT_REF_MAX_LENGTH = MODEL_NAME_MAX_LENGTH + 1 + ALIAS_MAX_LENGTH
CHECKPOINT_REF_DESCRIPTION = "a checkpoint id, or `model@alias` / `model@3` for a registered model's version"

_NAME = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)


@dataclass(frozen=True)
class ModelRef:
    """``model@alias`` (``alias`` set) or ``model@3`` (``version`` set)."""

    model: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.model}@{self.alias if self.alias is not None else self.version}"


def parse_model_ref(ref: str) -> ModelRef | None:
    """The registry reference ``ref`` spells, or None for a plain checkpoint id (no ``@``).

    ``ValueError`` naming the problem for a ``@`` reference that is malformed.
    """
    if "@" not in ref:
        return None
    model, _, target = ref.partition("@")
    if not _NAME.match(model):
        raise ValueError(f"{ref!r}: model name must match {MODEL_NAME_PATTERN}")
    if target.isdigit() and target.isascii() and len(target) <= 9:
        version = int(target)
        if version >= 1:
            return ModelRef(model, version=version)
    if not _ALIAS.match(target):
        raise ValueError(f"{ref!r}: after '@' give a version number (1, 2, ...) or an alias matching {ALIAS_PATTERN}")
    return ModelRef(model, alias=target)
