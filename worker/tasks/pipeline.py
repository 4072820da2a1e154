"""``pipeline``: the canonical dual-teacher run as child jobs; this task only schedules and summarises.

It runs once per wake-up: it starts every stage whose inputs are ready,
parks until a child finishes, and writes the master report when all are done.
"""

from __future__ import annotations

from app.jobs import PIPELINE_STAGES, pipeline_stage_params
from app.models import JobStatus
from core.artifacts import float_checkpoint
from core.networks import QNetworkArch, init_network
from worker.runner import ChildJob, JobContext


class StageFailed(RuntimeError):
    pass


def handle(context: JobContext) -> None:
    params = context.params
    parent_a, parent_b = params.parent_a_id, params.parent_b_id
    if params.parent_seeds is not None:
        arch = QNetworkArch(**params.arch.model_dump())
        parent_a, parent_b = (
            context.persist_checkpoint(float_checkpoint(init_network(arch, seed).state_dict(), arch), name=f"parent-{side}-seed{seed}", output_index=index)
            for index, (side, seed) in enumerate(zip("AB", params.parent_seeds))
        )
    children = context.children()
    for key, child in children.items():
        if child.status in (JobStatus.failed, JobStatus.cancelled):
            raise StageFailed(f"stage {key} ({child.kind}) {child.status.value}: {child.error or 'no error recorded'}")
    succeeded = {key: child.output_checkpoint_ids for key, child in children.items() if child.status == JobStatus.succeeded}
    context.spawn(
        [
            (stage.key, stage.kind, pipeline_stage_params(params, stage, parent_a, parent_b, succeeded))
            for stage in PIPELINE_STAGES
            if stage.key not in children and all(dependency in succeeded for dependency in stage.after)
        ]
    )
    if len(succeeded) < len(PIPELINE_STAGES):
        running = [key for key, child in children.items() if not child.finished]
        context.progress(len(succeeded) / len(PIPELINE_STAGES), f"{len(succeeded)}/{len(PIPELINE_STAGES)} stages done; running {', '.join(running) or 'next'}")
        context.wait_for_children(children)
    context.set_report(master_report(children, parent_a, parent_b))


def master_report(children: dict[str, ChildJob], parent_a: str, parent_b: str) -> dict:
    """Every stage's job, artifacts and key figures, with the overall verdicts."""
    body = {key: child.report or {} for key, child in children.items()}
    distillation_passed = all(body[f"validate_distillation_{side}"].get("passed") for side in "ab")
    quantization_passed = all(body[f"validate_quantized_{side}"].get("passed") for side in "ab")
    recombination_passed = bool(body["validate_recombination"].get("passed"))
    return {
        "passed": distillation_passed and quantization_passed and recombination_passed,
        "distillation_passed": distillation_passed,
        "quantization_passed": quantization_passed,
        "recombination_passed": recombination_passed,
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
            key: {"job_id": child.id, "kind": child.kind, "status": child.status.value, "outputs": child.output_checkpoint_ids, "passed": body[key].get("passed")}
            for key, child in children.items()
        },
        "key_metrics": {
            **{f"student_{side}_held_out_agreement": body[f"distill_{side}"]["held_out"]["action_agreement"] for side in "ab"},
            **{f"student_{side}_vs_teacher_agreement": body[f"validate_distillation_{side}"]["metrics"]["action_agreement"] for side in "ab"},
            **{f"int8_{side}_vs_float_agreement": body[f"validate_quantized_{side}"]["fidelity"]["action_agreement"] for side in "ab"},
            **{f"int8_{side}_file_compression": body[f"validate_quantized_{side}"]["size"]["file_compression_ratio"] for side in "ab"},
            "child_before_finetune": body["crossover"]["agreement_on_eval_states"],
            "child_vs_parent_a_agreement": body["validate_recombination"]["summary"]["child_agrees_with_parent_a"],
            "child_vs_parent_b_agreement": body["validate_recombination"]["summary"]["child_agrees_with_parent_b"],
            "oracle_agreement": body["validate_recombination"]["summary"]["oracle_agreement"],
            "parent_baseline_agreement": body["validate_recombination"]["summary"]["parent_baseline_agreement"],
        },
    }
