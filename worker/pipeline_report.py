"""The pipeline's master report: every stage's job, artifacts and key figures, and the verdicts they make."""

from __future__ import annotations

from typing import TypeVar

from app.contracts.report_models import (
    CrossoverReport,
    DistillReport,
    PipelineKeyMetrics,
    ReportBase,
    ValidateDistillationReport,
    ValidateQuantizedReport,
    ValidateRecombinationReport,
    ValidatorReport,
    parse_report,
)
from worker.runner import ChildJob

R = TypeVar("R", bound=ReportBase)


# The stages whose verdicts make the pipeline's, by the verdict they feed.
VERDICT_STAGES = {
    "distillation_passed": ("validate_distillation_a", "validate_distillation_b"),
    "quantization_passed": ("validate_quantized_a", "validate_quantized_b"),
    "recombination_passed": ("validate_recombination",),
}


def stage_report(children: dict[str, ChildJob], key: str, model: type[R]) -> R:
    """A finished stage's report as its kind's model."""
    report = parse_report(children[key].result)
    if not isinstance(report, model):
        raise TypeError(f"stage {key} reported {report.kind}, not {model.__name__}")
    return report


def master_report(children: dict[str, ChildJob], parent_a: str, parent_b: str) -> dict:
    """Every stage's job, artifacts and key figures, with the overall verdicts and what failed them."""
    reports = {key: parse_report(child.report) for key, child in children.items() if child.report}
    verdicts = {name: all(reports[key].passed for key in keys) for name, keys in VERDICT_STAGES.items()}
    validations = {
        key: stage_report(children, key, ValidatorReport) for keys in VERDICT_STAGES.values() for key in keys
    }
    failed_stages = [
        {"stage": key, "kind": children[key].kind, "failed_checks": report.failed_checks}
        for key, report in validations.items()
        if not report.passed
    ]
    students = {side: stage_report(children, f"distill_{side}", DistillReport) for side in "ab"}
    distillations = {
        side: stage_report(children, f"validate_distillation_{side}", ValidateDistillationReport) for side in "ab"
    }
    quantized = {side: stage_report(children, f"validate_quantized_{side}", ValidateQuantizedReport) for side in "ab"}
    crossover = stage_report(children, "crossover", CrossoverReport)
    recombination = stage_report(children, "validate_recombination", ValidateRecombinationReport).held_out
    key_metrics = PipelineKeyMetrics(
        student_a_held_out_agreement=students["a"].held_out.action_agreement,
        student_b_held_out_agreement=students["b"].held_out.action_agreement,
        student_a_vs_teacher_agreement=distillations["a"].held_out.action_agreement,
        student_b_vs_teacher_agreement=distillations["b"].held_out.action_agreement,
        int8_a_vs_float_agreement=quantized["a"].held_out.action_agreement,
        int8_b_vs_float_agreement=quantized["b"].held_out.action_agreement,
        int8_a_file_compression=quantized["a"].size.file_compression_ratio,
        int8_b_file_compression=quantized["b"].size.file_compression_ratio,
        child_before_finetune=crossover.held_out,
        child_vs_parent_a_agreement=recombination.child_vs_parent_a_agreement,
        child_vs_parent_b_agreement=recombination.child_vs_parent_b_agreement,
        oracle_agreement=recombination.oracle_agreement,
        parents_agreement=recombination.parents_agreement,
        recombination_bound=recombination.bound,
        bound_fraction=recombination.bound_fraction,
    )
    return {
        "passed": all(verdicts.values()),
        **verdicts,
        "failed_stages": failed_stages,
        "parents": {"parent_a": parent_a, "parent_b": parent_b},
        "artifacts": {
            "student_a": children["distill_a"].output_checkpoint_ids[0],
            "student_b": children["distill_b"].output_checkpoint_ids[0],
            "student_a_int8": children["ptq_a"].output_checkpoint_ids[0],
            "student_b_int8": children["ptq_b"].output_checkpoint_ids[0],
            "child": children["crossover"].output_checkpoint_ids[0],
            "child_finetuned": children["finetune"].output_checkpoint_ids[0],
        },
        "stages": {
            key: {
                "job_id": child.id,
                "kind": child.kind,
                "status": child.status.value,
                "outputs": child.output_checkpoint_ids,
                "passed": reports[key].passed if key in reports else None,
            }
            for key, child in children.items()
        },
        "key_metrics": key_metrics.model_dump(mode="json"),
    }
