"""The one-call pipeline, as child jobs, on each stack."""

import pytest

pytestmark = pytest.mark.integration


def test_the_default_pipeline_passes_with_a_good_child(stack):
    queued = stack.client.post(
        "/jobs/pipeline", json={"overrides": {"validate-quantized": {"throughput_batch_size": 64}}}
    )
    assert queued.status_code == 202, queued.text
    job = stack.wait_job(queued.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert len(job["children"]) == 11
    body = stack.client.get(f"/reports/{job['report_id']}").json()["body"]
    assert set(body) >= {"passed", "distillation_passed", "recombination_passed", "artifacts", "stages", "key_metrics"}
    assert body["passed"] is True and body["failed_stages"] == []
    assert body["distillation_passed"] and body["quantization_passed"] and body["recombination_passed"]
    key = body["key_metrics"]
    assert key["bound_fraction"] >= 0.85 and key["recombination_bound"] == (1 + key["parents_agreement"]) / 2
    assert all(stage["status"] == "succeeded" for stage in body["stages"].values())
    # The synthesised parents are the pipeline's own outputs; the tuned child descends from both students.
    parent_a, parent_b = job["output_checkpoint_ids"]
    assert body["parents"] == {"parent_a": parent_a, "parent_b": parent_b}
    lineage = stack.client.get(f"/checkpoints/{body['artifacts']['child_finetuned']}/lineage").json()
    node_ids = {node["id"] for node in lineage["nodes"]}
    assert {
        parent_a,
        parent_b,
        body["artifacts"]["student_a"],
        body["artifacts"]["student_b"],
        body["artifacts"]["child"],
    } <= node_ids
    distill_a = stack.client.get(f"/jobs/{body['stages']['distill_a']['job_id']}").json()
    assert distill_a["parent_job_id"] == job["id"] and distill_a["params"]["init"] == "shared"
    # Every wake-up came from a finishing child, none from the reconciler's lost-message sweep.
    assert "republished" not in stack.logs(tail=10**8)


def test_a_sabotaged_fine_tune_fails_the_pipeline_naming_the_stage_and_check(stack):
    sabotage = {"finetune": {"epochs": 1, "lr": 1e-7}, "validate-quantized": {"throughput_batch_size": 64}}
    queued = stack.client.post("/jobs/pipeline", json={"overrides": sabotage})
    job = stack.wait_job(queued.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]  # every stage ran; the verdict is the report's
    body = stack.client.get(f"/reports/{job['report_id']}").json()["body"]
    assert body["passed"] is False and body["recombination_passed"] is False
    failed = {stage["stage"]: stage for stage in body["failed_stages"]}
    assert failed["validate_recombination"]["failed_checks"][0] == "bound_fraction"
    assert body["key_metrics"]["bound_fraction"] < 0.85


def test_a_failing_stage_fails_the_pipeline_and_names_it(stack):
    queued = stack.client.post("/jobs/pipeline", json={"states": {"synthetic": {"n_states": 1, "seed": 1}}})
    job = stack.wait_job(queued.json()["id"], timeout=60)
    assert job["status"] == "failed"
    assert "stage distill_" in job["error"] and "2 rows" in job["error"]
    # Earlier artifacts stay: the synthesised parents were stored before the stages ran.
    assert len(job["output_checkpoint_ids"]) == 2
    assert all(
        stack.client.get(f"/checkpoints/{checkpoint}").status_code == 200 for checkpoint in job["output_checkpoint_ids"]
    )


def test_bad_overrides_are_422_naming_the_stage(stack):
    response = stack.client.post("/jobs/pipeline", json={"overrides": {"finetune": {"regime": "huge"}}})
    assert response.status_code == 422 and "stage finetune" in str(response.json()["detail"])
