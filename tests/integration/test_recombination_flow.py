"""Quantization and recombination job kinds end to end, over HTTP, on each stack."""

import pytest

pytestmark = pytest.mark.integration


def run(stack, kind: str, **params) -> tuple[dict, dict]:
    response = stack.client.post(f"/jobs/{kind}", json=params)
    assert response.status_code == 202, response.text
    job = stack.wait_job(response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", f"{kind}: {job['error']}"
    return job, stack.client.get(f"/reports/{job['report_id']}").json()


def parent(stack, seed: int, hidden: int = 32) -> str:
    return stack.client.post("/checkpoints/synthetic", json={"arch": {"hidden_size": hidden}, "seed": seed}).json()[
        "id"
    ]


def roles(stack, checkpoint_id: str) -> dict[str, str]:
    lineage = stack.client.get(f"/checkpoints/{checkpoint_id}/lineage").json()
    return {edge["role"]: edge["parent"] for edge in lineage["edges"] if edge["child"] == checkpoint_id}


def test_crossover_finetune_and_validate_recombination(stack):
    parent_a, parent_b = parent(stack, 1), parent(stack, 2)
    crossover_job, crossover_report = run(
        stack, "crossover", parent_a_id=parent_a, parent_b_id=parent_b, mode="aligned", alpha=0.5
    )
    (child,) = crossover_job["output_checkpoint_ids"]
    assert roles(stack, child) == {"parent_a": parent_a, "parent_b": parent_b}
    assert crossover_report["body"]["config"]["mode"] == "aligned"
    assert len(crossover_report["body"]["permutations"]) == 2

    finetune_job, finetune_report = run(
        stack, "finetune", checkpoint_id=child, regime="short", reference_b_id=parent_b, teacher_weight_a=0.5
    )
    assert finetune_job["params"]["reference_id"] == parent_a  # resolved from the lineage
    tuned = finetune_job["output_checkpoint_ids"][0]
    assert roles(stack, tuned) == {"source": child, "reference": parent_a, "reference_b": parent_b}
    body = finetune_report["body"]
    assert len(body["curves"]) == 5
    assert body["after"]["val_loss"] < body["before"]["val_loss"]

    assert body["target"] == "both" and body["config"]["temperature"] == 0.5

    _, validation = run(stack, "validate-recombination", child_id=tuned, parent_a_id=parent_a, parent_b_id=parent_b)
    summary = validation["body"]["held_out"]
    assert validation["kind"] == "validate-recombination"
    assert summary["primary_metric"] == min(
        summary["child_vs_parent_a_agreement"], summary["child_vs_parent_b_agreement"]
    )
    assert summary["target"] == "both" and summary["bound"] == (1 + summary["parents_agreement"]) / 2
    assert validation["body"]["passed"] == (summary["bound_fraction"] >= 0.85 and summary["oracle_agreement"] >= 0.9)
    assert "parent_a_vs_parent_b" in validation["body"]["comparisons"]


def test_quantize_auto_qat_and_validate_quantized(stack):
    teacher, student = parent(stack, 3, hidden=64), parent(stack, 4)
    quantize_job, quantize_report = run(stack, "quantize", checkpoint_id=student, teacher_id=teacher)
    path = quantize_report["body"]["decision_path"]
    assert path[0]["method"] == "dynamic" and path[0]["selection"]["agreement_vs_float"] is not None
    assert set(quantize_report["body"]["states"]) == {"training", "selection", "report"}
    chosen = quantize_report["body"]["chosen"]
    assert quantize_job["output_checkpoint_ids"][0] == chosen["checkpoint_id"]
    assert roles(stack, chosen["checkpoint_id"])["source"] == student

    qat_job, qat_report = run(stack, "qat", checkpoint_id=student, teacher_id=teacher, epochs=2)
    int8_id, float_id = qat_job["output_checkpoint_ids"]
    int8 = stack.client.get(f"/checkpoints/{int8_id}").json()
    assert int8["format"] == "int8" and int8["quantization"]["mode"] == "qat"
    assert int8["size_bytes"] * 2 <= stack.client.get(f"/checkpoints/{float_id}").json()["size_bytes"]
    assert roles(stack, int8_id) == {"source": student, "teacher": teacher}

    _, report = run(
        stack, "validate-quantized", float_id=student, quant_id=int8_id, teacher_id=teacher, throughput_batch_size=128
    )
    body = report["body"]
    assert body["kind"] == "validate-quantized" and body["checks"]["max_latency_ratio"]["gates"] is False
    assert body["size"]["param_compression_ratio"] > 2.8
    assert body["throughput"]["float"]["batch_size"] == 128
    assert body["teacher"] is not None
