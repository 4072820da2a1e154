"""Paged and filtered lists, the submit form and Cancel on /ui, in headless Chromium against the real service.

Every list keeps its filters and page in the address (``#/jobs?tag=a&status=failed&limit=2&offset=2``), with the
API's parameter names; a small ``limit`` there pages a handful of jobs.
"""

import re
import uuid

import pytest
from sqlmodel import Session

from app.service import crud
from app.service.db import get_engine
from app.service.tables import Job, JobStatus, ResourceType, utcnow
from tests.integration import test_ui
from tests.integration.test_recombination_flow import parent
from tests.integration.test_ui import open_page, screenshot

# The browser fixtures of the dashboard tests: one Chromium per module, a fresh page per test that fails on JS errors.
browser, page = test_ui.browser, test_ui.page

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]

JOB_ROWS = ".job-row"
SHOWN_IDS = "(selector) => [...document.querySelectorAll(selector)].map((row) => row.dataset.id)"


@pytest.fixture(scope="module")
def labelled_jobs(stack) -> dict:
    """Five PTQ jobs tagged with a fresh tag in a fresh experiment (two of them also with a second tag), and a failed
    job with both tags."""
    suffix = uuid.uuid4().hex[:8]
    tag, odd, experiment = f"pages-{suffix}", f"odd-{suffix}", f"ui-lists-{suffix}"
    checkpoint = parent(stack, 51)
    submitted = [
        stack.client.post(
            "/jobs/ptq",
            json={"checkpoint_id": checkpoint, "experiment": experiment, "tags": [tag, odd] if index < 2 else [tag]},
        )
        for index in range(5)
    ]
    assert all(response.status_code == 202 for response in submitted), [response.text for response in submitted]
    ptq = [stack.wait_job(response.json()["id"], timeout=120) for response in submitted]
    assert all(job["status"] == "succeeded" for job in ptq), [job["error"] for job in ptq]
    with Session(get_engine(stack.settings), expire_on_commit=False) as session:
        failed = Job(
            kind="ptq",
            params={"checkpoint_id": checkpoint},
            experiment=experiment,
            status=JobStatus.failed,
            stage="quantizing",
            error="RuntimeError: calibration diverged",
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        session.add(failed)
        session.flush()
        crud.add_tags(session, ResourceType.job, failed.id, [tag, odd])
        session.commit()
    return {
        "tag": tag,
        "odd": odd,
        "experiment": experiment,
        "checkpoint": checkpoint,
        "ptq": [job["id"] for job in ptq],
        "with_odd": [job["id"] for job in ptq[:2]],
        "failed": failed.id,
    }


def wait_for_rows(page, selector: str, ids: list[str]) -> list[str]:
    """The ids of the rows shown once they are ``ids`` (the page redraws after each navigation)."""
    page.wait_for_function(f"(ids) => JSON.stringify(({SHOWN_IDS})({selector!r})) === JSON.stringify(ids)", arg=ids)
    return page.evaluate(SHOWN_IDS, selector)


def wait_for_rows_unordered(page, count: int, selector: str = JOB_ROWS) -> list[str]:
    """The ids of the rows shown once the page has drawn ``count`` of them."""
    page.wait_for_function(
        "([selector, count]) => !document.querySelector('.loading') "
        "&& document.querySelectorAll(selector).length === count",
        arg=[selector, count],
    )
    return page.evaluate(SHOWN_IDS, selector)


def hash_of(page) -> str:
    return page.evaluate("window.location.hash")


def test_paging_through_jobs_keeps_the_page_in_the_address_for_back_and_reload(page, stack, labelled_jobs):
    tag = labelled_jobs["tag"]
    listed = stack.client.get("/jobs", params={"tag": tag}).json()
    expected = [job["id"] for job in listed["items"]]
    assert listed["total"] == 6 and set(expected) == {*labelled_jobs["ptq"], labelled_jobs["failed"]}

    open_page(page, stack, f"#/jobs?tag={tag}&limit=2", JOB_ROWS)
    shown = []
    for start in (0, 2, 4):
        shown += wait_for_rows(page, JOB_ROWS, expected[start : start + 2])
        assert page.locator(".pager-range").inner_text() == f"showing {start + 1}–{start + 2} of 6"
        assert hash_of(page) == f"#/jobs?tag={tag}&limit=2" + (f"&offset={start}" if start else "")
        if start < 4:
            page.click("a.pager-next")
    assert shown == expected  # every job once, newest first, as the API orders them
    assert page.locator("a.pager-next").count() == 0 and page.locator("span.pager-next.disabled").count() == 1
    screenshot(page, "ui-jobs-paged")

    page.go_back()
    wait_for_rows(page, JOB_ROWS, expected[2:4])
    assert hash_of(page) == f"#/jobs?tag={tag}&limit=2&offset=2"
    page.reload()
    wait_for_rows(page, JOB_ROWS, expected[2:4])
    page.click("a.pager-prev")
    wait_for_rows(page, JOB_ROWS, expected[0:2])
    assert page.locator("a.pager-prev").count() == 0


def test_filtering_jobs_by_tags_and_status_shows_exactly_the_matching_rows(page, stack, labelled_jobs):
    tag, odd = labelled_jobs["tag"], labelled_jobs["odd"]
    open_page(page, stack, "#/jobs", "#filters")
    page.fill("#filter-tag", f"{tag}, {odd}")
    page.click("#filters button[type=submit]")
    page.wait_for_function("(expected) => window.location.hash === expected", arg=f"#/jobs?tag={tag}&tag={odd}")
    both = set(wait_for_rows_unordered(page, 3))
    assert both == {*labelled_jobs["with_odd"], labelled_jobs["failed"]}

    page.select_option("#filter-status", "failed")  # a select applies at once, with the tags still set
    page.wait_for_function(
        "(expected) => window.location.hash === expected", arg=f"#/jobs?tag={tag}&tag={odd}&status=failed"
    )
    assert wait_for_rows_unordered(page, 1) == [labelled_jobs["failed"]]
    row = page.locator(f'.job-row[data-id="{labelled_jobs["failed"]}"]')
    assert row.locator(".status-failed").count() == 1
    assert row.locator(".experiment").inner_text() == labelled_jobs["experiment"]
    assert sorted(row.locator(".tag").all_inner_texts()) == sorted([tag, odd])
    assert page.input_value("#filter-tag") == f"{tag}, {odd}"  # the form shows what the address holds
    screenshot(page, "ui-jobs-filtered")

    # The experiment and status together: the five PTQ jobs, not the failed one.
    open_page(page, stack, f"#/jobs?experiment={labelled_jobs['experiment']}&status=succeeded", JOB_ROWS)
    assert sorted(wait_for_rows_unordered(page, 5)) == sorted(labelled_jobs["ptq"])
    page.select_option("#filter-status", "running")
    page.wait_for_selector(".empty")
    assert page.locator(JOB_ROWS).count() == 0
    assert page.locator(".empty").inner_text() == "No jobs match these filters."


def test_reports_and_checkpoints_filter_and_page_through_the_api(page, stack, labelled_jobs):
    tag = labelled_jobs["tag"]
    reports = stack.client.get("/reports", params={"tag": tag, "kind": "ptq", "limit": 100}).json()["items"]
    assert {report["job_id"] for report in reports} == set(labelled_jobs["ptq"])  # the failed job wrote none
    verdicts = {report["id"]: report["passed"] for report in reports}

    open_page(page, stack, "#/reports", "#filters")
    page.fill("#filter-tag", tag)
    page.fill("#filter-kind", "ptq")
    page.select_option("#filter-passed", "true")
    page.wait_for_function(
        "(expected) => window.location.hash === expected", arg=f"#/reports?tag={tag}&kind=ptq&passed=true"
    )
    passed = [report_id for report_id, verdict in verdicts.items() if verdict]
    if passed:
        assert sorted(wait_for_rows_unordered(page, len(passed), ".report-row")) == sorted(passed)
        assert page.locator(".report-row .tag", has_text=tag).count() == len(passed)
    else:
        page.wait_for_selector(".empty")
    page.select_option("#filter-passed", "false")
    failed = [report_id for report_id, verdict in verdicts.items() if not verdict]
    page.wait_for_function(
        "(expected) => window.location.hash === expected", arg=f"#/reports?tag={tag}&kind=ptq&passed=false"
    )
    if failed:
        assert sorted(wait_for_rows_unordered(page, len(failed), ".report-row")) == sorted(failed)
    else:
        page.wait_for_selector(".empty")
        assert page.locator(".report-row").count() == 0

    # The PTQ jobs' int8 outputs inherit their tag: five checkpoints, the last page holds one.
    outputs = stack.client.get("/checkpoints", params={"tag": tag, "format": "int8"}).json()
    assert outputs["total"] == 5
    open_page(page, stack, f"#/checkpoints?tag={tag}&format=int8&limit=2&offset=4", ".checkpoint-row")
    assert wait_for_rows(page, ".checkpoint-row", [outputs["items"][4]["id"]])
    assert page.locator(".pager-range").inner_text() == "showing 5–5 of 5"
    assert page.input_value("#filter-format") == "int8"
    page.click("a.pager-prev")
    wait_for_rows(page, ".checkpoint-row", [item["id"] for item in outputs["items"][2:4]])
    assert hash_of(page) == f"#/checkpoints?tag={tag}&format=int8&limit=2&offset=2"


def test_a_ptq_job_submitted_through_the_form_opens_its_page_and_succeeds(page, stack, labelled_jobs):
    checkpoint = labelled_jobs["checkpoint"]
    open_page(page, stack, "#/submit", "#submit-kind")
    page.select_option("#submit-kind", "ptq")
    page.wait_for_selector("#submit-form")
    assert hash_of(page) == "#/submit/ptq"
    # Fields and defaults come from the kind's request body in /openapi.json.
    assert page.input_value("#field-mode") == "dynamic" and page.input_value("#field-calibration_batches") == "10"
    assert page.input_value("#field-experiment") == "default"
    assert "calibration states" in page.locator('[data-field="states"] .field-help').inner_text()
    offered = page.locator("#recent-checkpoints option").evaluate_all("(options) => options.map((o) => o.value)")
    assert checkpoint in offered

    page.fill("#field-checkpoint_id", checkpoint)
    page.fill("#field-name", "queued from the form")
    page.fill("#field-experiment", labelled_jobs["experiment"])
    page.fill("#field-tags", "form, from-ui")
    page.select_option("#field-granularity", "per_channel")
    screenshot(page, "ui-submit")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"#/jobs/job_\w+$"))
    job_id = hash_of(page).rsplit("/", 1)[1]
    page.wait_for_selector("#job-status .status-succeeded", timeout=120_000)
    page.wait_for_selector("svg.bar-chart")  # the report's float vs int8 charts

    job = stack.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["kind"] == "ptq"
    assert job["name"] == "queued from the form" and job["experiment"] == labelled_jobs["experiment"]
    assert job["tags"] == ["form", "from-ui"]
    assert job["params"]["checkpoint_id"] == checkpoint and job["params"]["granularity"] == "per_channel"
    assert page.locator("#job-name").inner_text() == "queued from the form"
    assert page.locator("#cancel-button").count() == 0  # nothing to cancel once finished


def test_a_bad_field_shows_the_apis_422_next_to_the_form_and_queues_nothing(page, stack, labelled_jobs):
    before = stack.client.get("/jobs", params={"limit": 1}).json()["total"]
    open_page(page, stack, "#/submit/distill", "#submit-form")
    page.fill("#field-teacher_id", labelled_jobs["checkpoint"])
    page.fill("#field-epochs", "0")
    page.click("#submit-button")
    page.wait_for_selector("#submit-error .error-state")
    problems = page.locator("#submit-error li").all_inner_texts()
    assert problems == ["epochs: Input should be greater than or equal to 1"]
    assert page.locator('[data-field="epochs"].field-invalid').count() == 1
    assert hash_of(page) == "#/submit/distill"
    screenshot(page, "ui-submit-422")
    assert stack.client.get("/jobs", params={"limit": 1}).json()["total"] == before

    # A malformed nested value is caught before sending, naming the field.
    page.fill("#field-epochs", "2")
    page.fill("#field-states", '{"synthetic": ')
    page.click("#submit-button")
    page.wait_for_selector('[data-field="states"].field-invalid')
    assert page.locator("#submit-error li").inner_text().startswith("states: not valid JSON")
    assert stack.client.get("/jobs", params={"limit": 1}).json()["total"] == before


def test_cancel_on_a_long_distillation_shows_it_cancelled(page, stack, labelled_jobs):
    response = stack.client.post(
        "/jobs/distill", json={"teacher_id": labelled_jobs["checkpoint"], "epochs": 3000, "tags": ["cancel-me"]}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    open_page(page, stack, f"#/jobs/{job_id}", "#cancel-button:not([disabled])")
    assert page.locator("#job-status .status").inner_text() in ("queued", "running")
    page.click("#cancel-button")
    page.wait_for_selector("#job-status .status-cancelled", timeout=60_000)
    assert page.locator("#cancel-button").count() == 0
    assert page.locator("#job-error .notice").inner_text() == "This job was cancelled."
    job = stack.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    # The record is drawn again once the job ends: it shows when.
    finished = page.locator("#job-facts dt", has_text="finished").locator("xpath=following-sibling::dd[1]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#job-facts dt')].some("
        "(term) => term.textContent === 'finished' && term.nextElementSibling.textContent !== '–')"
    )
    assert finished.inner_text() == page.evaluate("(iso) => new Date(iso).toLocaleString()", job["finished_at"])
    screenshot(page, "ui-cancelled")


def test_cancelling_a_job_that_already_ended_shows_the_apis_409(page, stack, labelled_jobs):
    response = stack.client.post("/jobs/distill", json={"teacher_id": labelled_jobs["checkpoint"], "epochs": 3000})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    # Hold the page's event stream so it still shows the job unfinished when the API has already cancelled it.
    page.route(f"**/jobs/{job_id}/events", lambda route: None)
    open_page(page, stack, f"#/jobs/{job_id}", "#cancel-button:not([disabled])")
    assert stack.client.post(f"/jobs/{job_id}/cancel").status_code == 202
    assert stack.wait_job(job_id, timeout=60)["status"] == "cancelled"
    page.click("#cancel-button")
    page.wait_for_selector("#job-message .error-state")
    assert page.locator("#job-message").inner_text() == f"Not cancelled: job {job_id} already cancelled."


def test_a_filter_the_api_refuses_is_explained_under_the_filters(page, stack):
    open_page(page, stack, "#/jobs?experiment=two%20words", "#list-error")
    assert page.locator("#list-error").inner_text().startswith("These filters were refused: experiment: ")
    assert page.input_value("#filter-experiment") == "two words"  # still there to correct
    page.fill("#filter-experiment", "default")
    page.click("#filters button[type=submit]")
    page.wait_for_selector(JOB_ROWS)
    assert page.locator("#list-error").count() == 0
