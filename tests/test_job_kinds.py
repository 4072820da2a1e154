"""Every job kind's contract is complete: params, description, work estimate, lineage roles and a handler."""

import pytest
from pydantic import ValidationError

import worker.tasks
from app.contracts.job_kinds import JOB_KINDS, PIPELINE_STAGES, PUBLIC_KINDS, JobParams, PipelineParams
from app.contracts.report_models import ReportBase
from app.settings import Settings
from core import artifacts
from core.networks import QNetworkArch, init_params
from worker.runner import JobContext, handles, registered_handlers


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_every_kind_has_every_part(kind):
    job_kind = JOB_KINDS[kind]
    assert job_kind.name == kind
    assert issubclass(job_kind.params, JobParams)
    assert job_kind.description.strip()
    assert job_kind.params.__doc__ and job_kind.params.__doc__.strip()
    assert isinstance(job_kind.lineage_roles, frozenset)
    assert all(isinstance(role, str) and role for role in job_kind.lineage_roles)
    # A kind a client may POST is estimated before it is queued; an internal one is counted in its parent's.
    assert (job_kind.estimate is not None) == (not job_kind.internal)
    assert issubclass(job_kind.report_model, ReportBase)
    assert worker.tasks.HANDLERS[kind].__module__.startswith("worker.tasks.")


def test_handlers_cover_exactly_the_kinds():
    assert set(worker.tasks.HANDLERS) == set(JOB_KINDS)
    assert set(registered_handlers()) == set(JOB_KINDS)
    assert {"evolve", "pipeline", "search"} <= set(PUBLIC_KINDS)
    assert "evolve-child" not in PUBLIC_KINDS and "search-trial" not in PUBLIC_KINDS


def test_a_second_handler_or_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="already have a handler"):
        handles("distill")(lambda context: None)
    with pytest.raises(ValueError, match="no job kind 'distil'"):
        handles("distil")


def test_params_are_frozen_and_their_config_is_built_once():
    params = JOB_KINDS["distill"].params.model_validate({"teacher_id": "ckpt_a", "epochs": 3})
    config = params.config()
    assert config.epochs == 3 and params.config() is config
    with pytest.raises(ValidationError, match="frozen"):
        params.epochs = 4
    resolved = params.with_resolved(teacher_id="ckpt_b")
    assert resolved.teacher_id == "ckpt_b" and resolved.config() is config
    with pytest.raises(ValueError, match="epochs"):
        params.with_resolved(epochs=4)


def test_invalid_config_is_rejected_with_cores_message():
    with pytest.raises(ValidationError, match="val_fraction"):
        JOB_KINDS["distill"].params.model_validate({"teacher_id": "ckpt_a", "val_fraction": 1.5})


def test_pipeline_stage_params_come_from_the_params():
    params = PipelineParams.model_validate({"seed": 3, "overrides": {"distill": {"epochs": 2}}})
    assert params.parent_seeds == (0, 1)
    distill_a = next(stage for stage in params.stages if stage.key == "distill_a")
    stage = params.stage_params(distill_a, "ckpt_a", "ckpt_b", {})
    assert stage["teacher_id"] == "ckpt_a" and stage["epochs"] == 2
    finetune = next(stage for stage in PIPELINE_STAGES if stage.key == "finetune")
    outputs = {"crossover": ["ckpt_child"], "distill_a": ["ckpt_sa"], "distill_b": ["ckpt_sb"]}
    tuned = params.stage_params(finetune, "ckpt_a", "ckpt_b", outputs)
    assert (tuned["checkpoint_id"], tuned["reference_id"], tuned["reference_b_id"]) == (
        "ckpt_child",
        "ckpt_sa",
        "ckpt_sb",
    )


def test_add_checkpoint_refuses_a_lineage_role_the_kind_did_not_declare(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None, broker_url=None)
    context = JobContext(job_id="job_x", kind="ptq", params=None, settings=settings, claim_token="token")
    arch = QNetworkArch()
    checkpoint = artifacts.float_checkpoint(init_params(arch, 0), arch)
    assert context.add_checkpoint(checkpoint, lineage=[("ckpt_a", "source")]).startswith("ckpt_")
    with pytest.raises(ValueError, match=r"not \['teacher'\]"):
        context.add_checkpoint(checkpoint, lineage=[("ckpt_a", "teacher")])
    assert len(context.outputs) == 1
