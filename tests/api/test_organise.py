"""Experiments, tags, names; lists filtered by them, by verdict and by time; reports sorted, filtered and compared by
figure.

Reports come from real distill jobs run in this process by the worker's own ``run_job`` (``tests.real_reports``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.contracts.report_models import DistillReport, figure_names
from tests.api.conftest import client_for, make_settings, state_dict_bytes
from tests.real_reports import SMALL_EVAL_STATES, SMALL_STATES, run, synthetic

AGREEMENT = "held_out.action_agreement"


@pytest.fixture(scope="module")
def organised(tmp_path_factory):
    """Three real distill jobs filed under two experiments with overlapping tags, and a search with its trials."""
    settings = make_settings(tmp_path_factory.mktemp("organise"))
    with client_for(settings) as client:
        teacher = synthetic(client, 0)
        jobs = {}
        for key, experiment, tags, epochs, seed in (
            ("small", "sweep", ["lr", "baseline"], 1, 1),
            ("medium", "sweep", ["lr"], 3, 2),
            ("other", "default", ["baseline"], 2, 3),
        ):
            job, report = run(
                client,
                settings,
                "distill",
                teacher_id=teacher,
                epochs=epochs,
                seed=seed,
                states=SMALL_STATES,
                eval_states=SMALL_EVAL_STATES,
                name=f"distill {key}",
                experiment=experiment,
                tags=tags,
            )
            jobs[key] = (job, report)
        search, _ = run(
            client,
            settings,
            "search",
            parent_a_id=teacher,
            parent_b_id=synthetic(client, 1),
            preset="minimal",
            max_runs=2,
            n_states=200,
            experiment="sweep",
            tags=["search"],
        )
        yield client, settings, teacher, jobs, search


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def agreement(report: dict) -> float:
    return next(figure["value"] for figure in report["body"]["figures"] if figure["name"] == AGREEMENT)


def test_a_job_keeps_its_labels_out_of_its_params_and_hands_them_to_outputs_and_report(organised):
    client, _, _, jobs, _ = organised
    job, report = jobs["small"]
    assert (job["name"], job["experiment"], job["tags"]) == ("distill small", "sweep", ["baseline", "lr"])
    assert not {"name", "experiment", "tags"} & set(job["params"])
    assert (report["experiment"], report["tags"]) == ("sweep", ["baseline", "lr"])
    student = client.get(f"/checkpoints/{job['output_checkpoint_ids'][0]}").json()
    assert (student["experiment"], student["tags"]) == ("sweep", ["baseline", "lr"])


def test_child_jobs_and_their_outputs_inherit_the_parents_labels(organised):
    client, _, _, _, search = organised
    children = [client.get(f"/jobs/{child}").json() for child in search["children"]]
    assert len(children) >= 2
    assert {(child["experiment"], tuple(child["tags"])) for child in children} == {("sweep", ("search",))}
    outputs = [output for child in children for output in child["output_checkpoint_ids"]]
    assert outputs and all(client.get(f"/checkpoints/{o}").json()["tags"] == ["search"] for o in outputs)
    listed = ids(client.get("/jobs", params={"tag": "search", "limit": 500}))
    assert sorted(listed) == sorted([search["id"], *search["children"]])


def test_lists_filter_by_experiment_and_every_tag(organised):
    client, _, teacher, jobs, search = organised
    small, medium, other = (jobs[key][0]["id"] for key in ("small", "medium", "other"))
    assert set(ids(client.get("/jobs", params={"kind": "distill", "experiment": "sweep"}))) == {small, medium}
    assert set(ids(client.get("/jobs", params={"tag": "baseline"}))) == {small, other}
    assert ids(client.get("/jobs", params=[("tag", "baseline"), ("tag", "lr")])) == [small]
    assert ids(client.get("/jobs", params=[("tag", "baseline"), ("tag", "search")])) == []
    report_ids = {key: jobs[key][1]["id"] for key in jobs}
    assert set(ids(client.get("/reports", params={"tag": "lr"}))) == {report_ids["small"], report_ids["medium"]}
    assert set(ids(client.get("/reports", params={"kind": "distill", "experiment": "default"}))) == {
        report_ids["other"]
    }
    students = {key: jobs[key][0]["output_checkpoint_ids"][0] for key in jobs}
    assert set(ids(client.get("/checkpoints", params={"tag": "lr"}))) == {students["small"], students["medium"]}
    assert teacher in ids(client.get("/checkpoints", params={"experiment": "default", "limit": 500}))
    assert search["id"] not in ids(client.get("/jobs", params={"experiment": "default", "limit": 500}))


def test_lists_filter_by_verdict_and_creation_time(organised):
    client, _, _, jobs, _ = organised
    reports = [report for _, report in jobs.values()]
    passed_jobs = {report["job_id"] for report in reports if report["passed"]}
    failed_jobs = {report["job_id"] for report in reports if not report["passed"]}
    listed = set(ids(client.get("/jobs", params={"kind": "distill", "passed": "true"})))
    assert listed == passed_jobs
    assert set(ids(client.get("/jobs", params={"kind": "distill", "passed": "false"}))) == failed_jobs
    medium = jobs["medium"][0]
    created = datetime.fromisoformat(medium["created_at"]).replace(tzinfo=UTC)
    window = {
        "kind": "distill",
        "created_after": created.isoformat(),
        "created_before": (created + timedelta(microseconds=1)).isoformat(),
    }
    assert ids(client.get("/jobs", params=window)) == [medium["id"]]
    after = ids(client.get("/jobs", params={"kind": "distill", "created_after": created.isoformat()}))
    assert set(after) == {medium["id"], jobs["other"][0]["id"]}
    # The same moment in another zone is the same window.
    shifted = created.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    assert ids(client.get("/jobs", params={"kind": "distill", "created_after": shifted})) == after
    assert client.get("/jobs", params={"created_after": "yesterday"}).status_code == 422


def test_reports_sort_by_a_figure_either_way(organised):
    client, _, _, jobs, _ = organised
    by_agreement = sorted((-agreement(report), report["id"]) for _, report in jobs.values())
    descending = ids(client.get("/reports", params={"kind": "distill", "sort": f"-{AGREEMENT}"}))
    assert descending == [report_id for _, report_id in by_agreement]
    loss = {report["id"]: report["body"]["best_val_loss"] for _, report in jobs.values()}
    ascending = ids(client.get("/reports", params={"kind": "distill", "sort": "best_val_loss"}))
    assert [loss[i] for i in ascending] == sorted(loss.values())
    oldest_first = ids(client.get("/reports", params={"kind": "distill", "sort": "created_at"}))
    assert oldest_first == [jobs[key][1]["id"] for key in ("small", "medium", "other")]


def test_where_keeps_exactly_the_reports_that_meet_every_condition(organised):
    client, _, _, jobs, _ = organised
    values = {report["id"]: agreement(report) for _, report in jobs.values()}
    middle = sorted(values.values())[1]
    expected = {
        ">=": lambda v: v >= middle,
        ">": lambda v: v > middle,
        "<": lambda v: v < middle,
        "<=": lambda v: v <= middle,
        "==": lambda v: v == middle,
        "!=": lambda v: v != middle,
    }
    for op, keep in expected.items():
        listed = ids(client.get("/reports", params={"kind": "distill", "where": f"{AGREEMENT}{op}{middle!r}"}))
        assert set(listed) == {i for i, v in values.items() if keep(v)}, op
    epochs = {report["id"]: report["body"]["best_epoch"] for _, report in jobs.values()}
    both = [("kind", "distill"), ("where", f"{AGREEMENT} >= {middle!r}"), ("where", "best_epoch>=2")]
    assert set(ids(client.get("/reports", params=both))) == {
        i for i in values if values[i] >= middle and epochs[i] >= 2
    }


def test_figure_queries_name_the_valid_figures_when_wrong(organised):
    client = organised[0]
    valid = figure_names(DistillReport)
    unknown = client.get("/reports", params={"kind": "distill", "sort": "-accuracy"})
    assert unknown.status_code == 422 and "'accuracy'" in unknown.json()["detail"]
    assert all(name in unknown.json()["detail"] for name in valid)
    no_kind = client.get("/reports", params={"where": f"{AGREEMENT}>0.5"})
    assert no_kind.status_code == 422 and "kind=" in no_kind.json()["detail"] and "distill" in no_kind.json()["detail"]
    for bad in (f"{AGREEMENT}~0.5", f"{AGREEMENT}>=high", f"{AGREEMENT}>=nan", "best_epoch>=1e999"):
        response = client.get("/reports", params={"kind": "distill", "where": bad})
        assert response.status_code == 422 and "where" in response.json()["detail"], bad
    assert client.get("/reports", params={"kind": "distill", "sort": "-a;drop"}).status_code == 422
    assert (
        client.get("/reports", params={"kind": "search", "sort": "-x"}).json()["detail"].endswith("valid figures: none")
    )


def test_patch_renames_and_retags_jobs_and_checkpoints(organised):
    client, _, teacher, jobs, _ = organised
    job = jobs["other"][0]
    renamed = client.patch(f"/jobs/{job['id']}", json={"name": "kept", "tags": ["final", "baseline", "final"]})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["tags"]) == ("kept", ["baseline", "final"])
    assert client.get(f"/reports/{jobs['other'][1]['id']}").json()["tags"] == ["baseline", "final"]
    assert ids(client.get("/jobs", params={"tag": "final"})) == [job["id"]]
    untouched = client.patch(f"/jobs/{job['id']}", json={}).json()
    assert (untouched["name"], untouched["tags"]) == ("kept", ["baseline", "final"])
    name_before = client.get(f"/checkpoints/{teacher}").json()["name"]
    checkpoint = client.patch(f"/checkpoints/{teacher}", json={"tags": ["teacher"]}).json()
    assert (checkpoint["tags"], checkpoint["name"]) == (["teacher"], name_before)
    assert client.patch(f"/checkpoints/{teacher}", json={"name": None}).json()["name"] is None
    assert ids(client.get("/checkpoints", params={"tag": "teacher"})) == [teacher]
    assert client.patch("/jobs/job_00000000000000000000", json={"name": "x"}).status_code == 404
    assert client.patch(f"/checkpoints/{teacher}", json={"tags": ["bad tag"]}).status_code == 422
    assert client.patch(f"/checkpoints/{teacher}", json={"tags": [f"t{i}" for i in range(21)]}).status_code == 422
    assert client.patch(f"/jobs/{job['id']}", json={"owner": "me"}).status_code == 422


def test_compare_puts_figures_side_by_side_with_differences_from_the_first(organised):
    client, _, _, jobs, _ = organised
    first, second = jobs["small"][1], jobs["medium"][1]
    response = client.get("/reports/compare", params={"ids": f"{first['id']},{second['id']}"})
    assert response.status_code == 200, response.text
    comparison = response.json()
    assert [(r["id"], r["kind"], r["job_id"]) for r in comparison["reports"]] == [
        (first["id"], "distill", first["job_id"]),
        (second["id"], "distill", second["job_id"]),
    ]
    assert [len(r["curves"]) for r in comparison["reports"]] == [
        len(first["body"]["curves"]),
        len(second["body"]["curves"]),
    ]
    row = next(f for f in comparison["figures"] if f["name"] == AGREEMENT)
    assert row["values"] == [agreement(first), agreement(second)]
    assert row["differences"] == [0.0, pytest.approx(agreement(second) - agreement(first))]
    text = next(f for f in comparison["figures"] if f["name"] == "student_id")
    assert text["differences"] == [None, None]


def test_compare_of_different_kinds_leaves_missing_figures_null(organised):
    client, _, _, jobs, search = organised
    search_report = search["report_id"]
    comparison = client.get("/reports/compare", params={"ids": f"{jobs['small'][1]['id']},{search_report}"}).json()
    row = next(f for f in comparison["figures"] if f["name"] == AGREEMENT)
    assert row["values"][1] is None and row["differences"][1] is None
    assert comparison["reports"][1]["curves"] == []


def test_compare_refuses_unknown_and_too_few_or_many_ids(organised):
    client, _, _, jobs, _ = organised
    known = jobs["small"][1]["id"]
    missing = client.get("/reports/compare", params={"ids": f"{known},rep_00000000000000000000,nonsense"})
    assert missing.status_code == 404
    assert "rep_00000000000000000000" in missing.json()["detail"] and "nonsense" in missing.json()["detail"]
    assert client.get("/reports/compare", params={"ids": known}).status_code == 422
    assert client.get("/reports/compare", params={"ids": f"{known},{known}"}).status_code == 422
    assert client.get("/reports/compare", params={"ids": ",".join([known] * 21)}).status_code == 422


def test_uploads_and_synthetic_checkpoints_take_labels(organised):
    client = organised[0]
    uploaded = client.post(
        "/checkpoints",
        files={"file": ("a.pt", state_dict_bytes())},
        data={"experiment": "imports", "tags": ["sb3", "zoo"]},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert (uploaded.json()["experiment"], uploaded.json()["tags"]) == ("imports", ["sb3", "zoo"])
    made = client.post("/checkpoints/synthetic", json={"seed": 5, "experiment": "imports", "tags": ["zoo"]}).json()
    assert set(ids(client.get("/checkpoints", params={"experiment": "imports"}))) == {uploaded.json()["id"], made["id"]}
    assert ids(client.get("/checkpoints", params=[("tag", "zoo"), ("tag", "sb3")])) == [uploaded.json()["id"]]
    bad = client.post("/checkpoints", files={"file": ("a.pt", state_dict_bytes())}, data={"experiment": "no spaces"})
    assert bad.status_code == 422
    assert client.post("/checkpoints/synthetic", json={"seed": 5, "tags": [""]}).status_code == 422


def test_job_bodies_validate_labels(organised):
    client, _, teacher, _, _ = organised
    for labels in (
        {"tags": ["x" * 65]},
        {"tags": ["-leading"]},
        {"experiment": ""},
        {"name": "n" * 201},
        {"tags": "one"},
    ):
        response = client.post("/jobs/distill", json={"teacher_id": teacher} | labels)
        assert response.status_code == 422, labels
        assert next(iter(labels)) in str(response.json()["detail"])
