"""Every kind's report model validates the report a real job of that kind stores, and the API documents them.

The jobs run in this process through the worker's own ``run_job`` and task
handlers (``tests.real_reports``), so the bodies are exactly what workers store.
"""

from __future__ import annotations

import importlib.util
import json
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.contracts.job_kinds import JOB_KINDS
from app.contracts.report_models import REPORT_SCHEMA_VERSION, ReportBody, parse_report, stored_body
from tests.api.conftest import client_for, make_settings
from tests.real_reports import every_kind

REPORT_MODELS = {kind: job_kind.report_model for kind, job_kind in JOB_KINDS.items()}
V1_REPORTS = json.loads((Path(__file__).parents[1] / "data" / "reports_v1.json").read_text())
MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0004_report_schema_2.py"


def migration_module():
    spec = importlib.util.spec_from_file_location("report_schema_2", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A client and one real report (as ``GET /reports/{id}`` serves it) per job kind."""
    settings = make_settings(tmp_path_factory.mktemp("reports"))
    with client_for(settings) as client:
        yield client, every_kind(client, settings)


def without_figures(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "figures"}


def test_the_report_union_holds_each_kinds_registered_model_once():
    union = typing.get_args(typing.get_args(ReportBody)[0])
    assert set(union) == set(REPORT_MODELS.values()) and len(union) == len(REPORT_MODELS)
    assert all(
        typing.get_args(model.model_fields["kind"].annotation) == (kind,) for kind, model in REPORT_MODELS.items()
    )


def test_every_kind_has_a_model_that_validates_its_real_report(served):
    _, reports = served
    assert set(reports) == set(REPORT_MODELS)
    for kind, report in reports.items():
        body = report["body"]
        model = parse_report(without_figures(body))
        assert type(model) is REPORT_MODELS[kind] and model.kind == kind == report["kind"]
        assert report["schema_version"] == body["schema_version"] == REPORT_SCHEMA_VERSION
        assert model.job_id == report["job_id"] and model.passed == report["passed"]
        # What is stored is what the model keeps, and the figures served are the model's.
        assert stored_body(model) == without_figures(body)
        assert body["figures"] == [figure.model_dump() for figure in model.figures]


def test_the_same_figure_has_the_same_name_in_every_kind(served):
    _, reports = served
    for kind in ("distill", "qat", "finetune"):
        curves = reports[kind]["body"]["curves"]
        assert [epoch["epoch"] for epoch in curves] == [1, 2] and "history" not in reports[kind]["body"]
    held_out = {kind: reports[kind]["body"]["held_out"] for kind in ("distill", "validate-distillation", "ptq")}
    assert all(0.0 <= figures["action_agreement"] <= 1.0 for figures in held_out.values())
    assert reports["validate-quantized"]["body"]["held_out"]["n_states"] == 200
    ptq = reports["ptq"]["body"]
    assert "validation" not in ptq and set(ptq["checks"]) == set(reports["validate-quantized"]["body"]["checks"])
    assert ptq["failed_checks"] == [
        name for name, check in ptq["checks"].items() if check["gates"] and not check["passed"]
    ]
    assert ptq["quantization"]["calibration_samples"] == 0 and ptq["quantization"]["mode"] == "dynamic"
    for kind in ("crossover", "validate-recombination"):
        figures = reports[kind]["body"]["held_out"]
        assert figures["primary_metric"] == min(
            figures["child_vs_parent_a_agreement"], figures["child_vs_parent_b_agreement"]
        )
    quantize = reports["quantize"]["body"]
    assert quantize["chosen"]["held_out"] == next(
        attempt["held_out"] for attempt in quantize["decision_path"] if attempt["kept"]
    )


def test_figures_are_the_scalars_of_the_sections_each_kind_shows(served):
    _, reports = served
    distill = {figure["name"]: figure["value"] for figure in reports["distill"]["body"]["figures"]}
    body = reports["distill"]["body"]
    assert distill["held_out.action_agreement"] == body["held_out"]["action_agreement"]
    assert distill["best_epoch"] == body["best_epoch"] and "job_id" not in distill and "passed" not in distill
    ptq = {figure["name"]: figure["value"] for figure in reports["ptq"]["body"]["figures"]}
    assert ptq["size.file_compression_ratio"] == reports["ptq"]["body"]["size"]["file_compression_ratio"]
    assert ptq["latency.float.median_ms"] == reports["ptq"]["body"]["latency"]["float"]["median_ms"]


def test_the_pipeline_reports_its_stages_figures(served):
    client, reports = served
    body = reports["pipeline"]["body"]

    def stage(key: str) -> dict:
        return client.get("/reports", params={"job_id": body["stages"][key]["job_id"]}).json()["items"][0]

    def stage_body(key: str) -> dict:
        return client.get(f"/reports/{stage(key)['id']}").json()["body"]

    metrics = body["key_metrics"]
    assert metrics["student_a_held_out_agreement"] == stage_body("distill_a")["held_out"]["action_agreement"]
    quantized_b = stage_body("validate_quantized_b")
    assert metrics["int8_b_file_compression"] == quantized_b["size"]["file_compression_ratio"]
    assert metrics["child_before_finetune"] == stage_body("crossover")["held_out"]
    recombination = stage_body("validate_recombination")["held_out"]
    assert metrics["child_vs_parent_a_agreement"] == recombination["child_vs_parent_a_agreement"]
    assert body["recombination_passed"] == stage("validate_recombination")["passed"]


def test_a_body_that_does_not_fit_its_kind_is_refused(served):
    _, reports = served
    finetune = without_figures(reports["finetune"]["body"])
    old_name = {key if key != "curves" else "history": value for key, value in finetune.items()}
    with pytest.raises(ValidationError, match="history"):
        parse_report(old_name)
    with pytest.raises(ValidationError):
        parse_report(finetune | {"kind": "teleport"})


def test_openapi_documents_the_report_body_per_kind(served):
    client, _ = served
    schema = client.get("/openapi.json").json()
    body = schema["components"]["schemas"]["ReportPublic"]["properties"]["body"]
    assert body["discriminator"]["propertyName"] == "kind"
    assert set(body["discriminator"]["mapping"]) == set(REPORT_MODELS)
    distill = schema["components"]["schemas"]["DistillReport"]
    assert {"curves", "held_out", "figures", "schema_version"} <= set(distill["properties"])
    assert schema["paths"]["/reports/{report_id}"]["get"]["responses"]["200"]["content"]["application/json"]


def test_1_0_reports_upgrade_to_the_shape_real_jobs_write_and_back(served):
    _, reports = served
    migration = migration_module()
    assert {row["kind"] for row in V1_REPORTS} == set(REPORT_MODELS)
    for row in V1_REPORTS:
        upgraded = migration.upgrade_body(row["kind"], row["body"])
        model = parse_report(upgraded)
        assert stored_body(model) == upgraded
        # The same fields, section by section, as a report written today.
        today = without_figures(reports[row["kind"]]["body"])
        assert set(upgraded) == set(today), row["kind"]
        for name, value in upgraded.items():
            if isinstance(value, dict) and name in ("held_out", "quantization", "checks", "key_metrics"):
                assert set(value) == set(today[name]), (row["kind"], name)
        assert migration.downgrade_body(row["kind"], upgraded) == row["body"]
