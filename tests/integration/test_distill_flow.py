"""Distillation and its validation end to end, over HTTP, on each stack."""

import pytest

from tests.integration.test_recombination_flow import run

pytestmark = pytest.mark.integration


def test_distill_then_validate_on_held_out_states(stack):
    teacher = stack.client.post("/checkpoints/synthetic", json={"seed": 11}).json()["id"]
    job, report = run(
        stack, "distill", teacher_id=teacher, epochs=3, states={"synthetic": {"n_states": 2000, "seed": 7919}}
    )
    (student,) = job["output_checkpoint_ids"]
    record = stack.client.get(f"/checkpoints/{student}").json()
    assert record["arch"]["hidden_sizes"] == [32, 32]
    body = report["body"]
    assert len(body["curves"]) == 3 and body["student_id"] == student
    assert 0.0 < body["held_out"]["action_agreement"] <= 1.0
    lineage = stack.client.get(f"/checkpoints/{student}/lineage").json()
    assert lineage["edges"][0]["role"] == "teacher" and lineage["edges"][0]["parent"] == teacher

    queued = stack.client.post("/jobs/validate-distillation", json={"student_id": student, "teacher_id": teacher})
    # The student trained on seed 7919, the default evaluation seed: another one is chosen and recorded.
    assert queued.json()["params"]["states"]["synthetic"]["seed"] != 7919
    validation = stack.wait_job(queued.json()["id"])
    body = stack.client.get(f"/reports/{validation['report_id']}").json()["body"]
    assert body["kind"] == "validate-distillation"
    assert body["checks"]["min_cosine_similarity"]["gates"] is False
    assert set(body["held_out"]["robustness_slice_agreements"]) == {"low_resource", "high_threat", "sparse_obs"}


def test_distilling_the_same_teacher_twice_gives_the_same_bytes(stack):
    teacher = stack.client.post("/checkpoints/synthetic", json={"seed": 12}).json()["id"]
    shas = set()
    for _ in range(2):
        job, _ = run(stack, "distill", teacher_id=teacher, epochs=2, seed=5)
        shas.add(stack.client.get(f"/checkpoints/{job['output_checkpoint_ids'][0]}").json()["sha256"])
    assert len(shas) == 1
