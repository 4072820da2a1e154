"""Reports stored as schema 1.0 rewritten to 2.0: one name for the same figure in every kind.

- per-epoch figures are ``curves`` everywhere (qat and finetune said ``history``);
- held-out figures are ``held_out`` everywhere: validate-distillation's
  ``metrics``, validate-quantized's ``fidelity``, validate-recombination's
  ``summary``, crossover's ``agreement_on_eval_states`` (also under pipeline's
  ``key_metrics.child_before_finetune``), quantize's attempts' ``report``;
- a child's agreement with a parent is ``child_vs_parent_a_agreement`` (was
  ``child_agrees_with_parent_a`` and ``child_vs_parent_a``);
- validate-distillation keeps its rollout once, at the top level (it was also under ``metrics``);
- PTQ's validation is no longer nested under ``validation``: its fields sit at
  the top level as in validate-quantized, and one ``quantization`` section
  holds the scheme and how it was made.

The rewrite is a pure function of each body (written here, frozen with the
revision); downgrade is its inverse.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_VERSION, NEW_VERSION = "1.0", "2.0"
PARENT_AGREEMENT = {
    "child_vs_parent_a": "child_vs_parent_a_agreement",
    "child_vs_parent_b": "child_vs_parent_b_agreement",
}
RECOMBINATION_AGREEMENT = {
    "child_agrees_with_parent_a": "child_vs_parent_a_agreement",
    "child_agrees_with_parent_b": "child_vs_parent_b_agreement",
}
HELD_OUT_SECTION = {
    "validate-distillation": "metrics",
    "validate-quantized": "fidelity",
    "validate-recombination": "summary",
    "crossover": "agreement_on_eval_states",
}
# What a 1.0 PTQ report kept under ``validation`` besides the fields it also had at the top level.
VALIDATION_BOILERPLATE = ("schema_version", "kind", "passed")
# The 1.0 PTQ report's own ``quantization`` keys; the rest of the merged section came from its validation.
PTQ_QUANTIZATION_KEYS = (
    "activations",
    "calibration_samples",
    "elapsed_seconds",
    "float_param_bytes",
    "granularity",
    "mode",
    "quantized_param_bytes",
    "scheme",
    "weight_zero_point",
)


# Fields of a 2.0 PTQ report that are PTQ's own, not its validation's.
PTQ_OWN_KEYS = (
    "schema_version",
    "kind",
    "passed",
    "source_checkpoint_id",
    "quantized_checkpoint_id",
    "job_id",
    "torch_version",
)
PTQ_ONLY_QUANTIZATION_KEYS = ("calibration_samples", "elapsed_seconds", "float_param_bytes", "quantized_param_bytes")


def renamed(section: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """``section`` with keys renamed, in place in the key order."""
    return {names.get(key, key): value for key, value in section.items()}


def inverse(names: dict[str, str]) -> dict[str, str]:
    return {new: old for old, new in names.items()}


def upgrade_body(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A 1.0 report body of a ``kind`` job in the 2.0 shape."""
    body = renamed(body, {"history": "curves", HELD_OUT_SECTION.get(kind, "held_out"): "held_out"})
    if kind in ("crossover", "validate-recombination"):
        names = PARENT_AGREEMENT if kind == "crossover" else RECOMBINATION_AGREEMENT
        body["held_out"] = renamed(body["held_out"], names)
    elif kind == "pipeline":
        metrics = body["key_metrics"]
        body["key_metrics"] = metrics | {
            "child_before_finetune": renamed(metrics["child_before_finetune"], PARENT_AGREEMENT)
        }
    elif kind == "validate-distillation":
        # The rollout was there twice; it stays at the top level only.
        body["held_out"] = {key: value for key, value in body["held_out"].items() if key != "rollout"}
    elif kind == "quantize":
        body["chosen"] = renamed(body["chosen"], {"report": "held_out"})
        body["decision_path"] = [renamed(attempt, {"report": "held_out"}) for attempt in body["decision_path"]]
    elif kind == "ptq":
        validation = {key: value for key, value in body["validation"].items() if key not in VALIDATION_BOILERPLATE}
        validation = renamed(validation, {"fidelity": "held_out"})
        own = {key: value for key, value in body.items() if key not in ("validation", "failed_checks", "quantization")}
        body = own | validation | {"quantization": validation["quantization"] | body["quantization"]}
    return body | {"schema_version": NEW_VERSION}


def downgrade_body(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A 2.0 report body of a ``kind`` job in the 1.0 shape."""
    if kind in ("crossover", "validate-recombination"):
        names = PARENT_AGREEMENT if kind == "crossover" else RECOMBINATION_AGREEMENT
        body = body | {"held_out": renamed(body["held_out"], inverse(names))}
    elif kind == "pipeline":
        metrics = body["key_metrics"]
        body = body | {
            "key_metrics": metrics
            | {"child_before_finetune": renamed(metrics["child_before_finetune"], inverse(PARENT_AGREEMENT))}
        }
    elif kind == "validate-distillation" and body.get("rollout") is not None:
        body = body | {"held_out": body["held_out"] | {"rollout": body["rollout"]}}
    elif kind == "quantize":
        body = body | {
            "chosen": renamed(body["chosen"], {"held_out": "report"}),
            "decision_path": [renamed(attempt, {"held_out": "report"}) for attempt in body["decision_path"]],
        }
    elif kind == "ptq":
        merged = body["quantization"]
        validation = {key: value for key, value in body.items() if key not in PTQ_OWN_KEYS}
        validation = renamed(validation, {"held_out": "fidelity"}) | {
            "quantization": {key: value for key, value in merged.items() if key not in PTQ_ONLY_QUANTIZATION_KEYS},
            "schema_version": OLD_VERSION,
            "kind": "validate-quantized",
            "passed": body["passed"],
        }
        body = {key: body[key] for key in PTQ_OWN_KEYS} | {
            "failed_checks": body["failed_checks"],
            "quantization": {key: merged[key] for key in PTQ_QUANTIZATION_KEYS if key in merged},
            "validation": validation,
        }
    body = renamed(body, {"curves": "history"} if kind in ("qat", "finetune") else {})
    body = renamed(body, {"held_out": HELD_OUT_SECTION[kind]} if kind in HELD_OUT_SECTION else {})
    return body | {"schema_version": OLD_VERSION}


def rewrite(convert: Callable[[str, dict[str, Any]], dict[str, Any]], source: str, target: str) -> None:
    """Every report at schema ``source`` converted to ``target``, one row at a time."""
    reports = sa.table(
        "reports",
        sa.column("id", sa.String),
        sa.column("kind", sa.String),
        sa.column("schema_version", sa.String),
        sa.column("body", sa.JSON),
    )
    connection = op.get_bind()
    query = sa.select(reports.c.id, reports.c.kind, reports.c.body).where(reports.c.schema_version == source)
    for report_id, kind, body in connection.execute(query).all():
        connection.execute(
            reports.update().where(reports.c.id == report_id).values(body=convert(kind, body), schema_version=target)
        )


def upgrade() -> None:
    """Rewrite every 1.0 report body to 2.0."""
    rewrite(upgrade_body, OLD_VERSION, NEW_VERSION)


def downgrade() -> None:
    """Rewrite every 2.0 report body back to 1.0."""
    rewrite(downgrade_body, NEW_VERSION, OLD_VERSION)
