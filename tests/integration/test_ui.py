"""The dashboard in headless Chromium against the real service: charts, lineage graph, error state, API key prompt.

Screenshots are kept under ``test-artifacts/`` for a person to look at.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from app.service.db import get_engine
from app.service.tables import Job, JobStatus, utcnow
from tests.integration.stack import free_port
from tests.integration.test_recombination_flow import parent, run

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]

CHROMIUM = os.environ.get("RECOMB_TEST_CHROMIUM", "/usr/bin/chromium")
# Flags that work headless as root in a container, and keep Chromium off the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_PAGE_SIZE = 50  # rows per page of a dashboard list whose address names no `limit`
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# A leaderboard with every kind of row (children, parent baselines, a degenerate trial), as ``core.search.leaderboard`` writes it.
LEADERBOARD = [
    {
        "rank": 1,
        "trial_id": "t002-aligned-a0.5-short",
        "primary_metric": 0.86,
        "child_vs_parent_a_agreement": 0.9,
        "child_vs_parent_b_agreement": 0.86,
        "is_parent_baseline": False,
        "degenerate": False,
    },
    {
        "rank": 2,
        "trial_id": "t000-weighted-a0.5-short",
        "primary_metric": 0.74,
        "child_vs_parent_a_agreement": 0.74,
        "child_vs_parent_b_agreement": 0.81,
        "is_parent_baseline": False,
        "degenerate": False,
    },
    {
        "rank": 3,
        "trial_id": "parent_a",
        "primary_metric": 0.41,
        "child_vs_parent_a_agreement": 1.0,
        "child_vs_parent_b_agreement": 0.41,
        "is_parent_baseline": True,
        "degenerate": False,
    },
    {
        "rank": 4,
        "trial_id": "parent_b",
        "primary_metric": 0.41,
        "child_vs_parent_a_agreement": 0.41,
        "child_vs_parent_b_agreement": 1.0,
        "is_parent_baseline": True,
        "degenerate": False,
    },
    {
        "rank": 5,
        "trial_id": "t001-layer-short",
        "primary_metric": 0.12,
        "child_vs_parent_a_agreement": 0.12,
        "child_vs_parent_b_agreement": 0.95,
        "is_parent_baseline": False,
        "degenerate": True,
    },
]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        problem = f"playwright is not installed: {error}"
    else:
        problem = (
            None
            if shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
            else f"{CHROMIUM} is missing (apt-get install chromium)"
        )
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        # Playwright launches with a fresh, empty profile directory of its own.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def finished_jobs(stack) -> dict[str, dict]:
    """A distillation, a crossover of two synthetic parents, its validation, a PTQ job, and a failed job."""
    teacher = parent(stack, 31, hidden=64)
    distill, _ = run(
        stack, "distill", teacher_id=teacher, epochs=6, states={"synthetic": {"n_states": 2000, "seed": 5}}
    )
    parent_a, parent_b = parent(stack, 32), parent(stack, 33)
    crossover, _ = run(stack, "crossover", parent_a_id=parent_a, parent_b_id=parent_b, mode="aligned")
    (child,) = crossover["output_checkpoint_ids"]
    validation, _ = run(stack, "validate-recombination", child_id=child, parent_a_id=parent_a, parent_b_id=parent_b)
    ptq, _ = run(stack, "ptq", checkpoint_id=parent_a)
    with Session(get_engine(stack.settings), expire_on_commit=False) as session:
        failed = Job(
            kind="distill",
            params={"teacher_id": teacher},
            status=JobStatus.failed,
            stage="distilling: epoch 2/10",
            error="RuntimeError: loss became NaN at epoch 2",
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        session.add(failed)
        session.commit()
    return {
        "distill": distill,
        "crossover": crossover,
        "validation": validation,
        "ptq": ptq,
        "failed": {"id": failed.id},
    }


def open_page(page, stack, fragment: str, ready: str) -> None:
    page.goto(f"{stack.url}/ui{fragment}")
    page.wait_for_selector(ready, timeout=30_000)


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_job_list_shows_every_job_with_its_status(page, stack, finished_jobs):
    open_page(page, stack, "", ".job-row")
    total = stack.client.get("/jobs").json()["total"]
    shown = min(total, DEFAULT_PAGE_SIZE)
    assert page.locator(".job-row").count() == shown
    assert page.locator(".pager-range").inner_text() == f"showing 1–{shown} of {total}"
    assert (
        page.locator(f'.job-row[data-id="{finished_jobs["distill"]["id"]}"]').get_attribute("data-status")
        == "succeeded"
    )
    assert page.locator(f'.job-row[data-id="{finished_jobs["failed"]["id"]}"] .status-failed').count() == 1
    screenshot(page, "ui-jobs")


def test_distill_job_page_plots_its_curves_and_lineage(page, stack, finished_jobs):
    job = finished_jobs["distill"]
    open_page(page, stack, f"#/jobs/{job['id']}", ".lineage-graph")
    assert page.locator("#job-status .status-succeeded").count() == 1
    charts = page.locator("svg.line-chart")
    assert charts.count() == 2  # loss, agreement
    assert charts.nth(0).locator(".chart-line").count() == 2 and charts.nth(0).locator(".chart-point").count() == 2 * 6
    assert charts.nth(1).locator(".chart-point").count() == 2 * 6
    assert page.locator(".lineage-node").count() == 2 and page.locator(".lineage-edge").count() == 1
    assert page.locator(".lineage-edge .lineage-role").text_content() == "teacher"
    # Nodes show the layout: the student halves the teacher's widths.
    assert sorted(" ".join(meta.split(" · ")[1:2]) for meta in page.locator(".lineage-meta").all_text_contents()) == [
        "8-32-32-4 layernorm relu",
        "8-64-64-4 layernorm relu",
    ]
    screenshot(page, "ui-distill")


def test_recombination_pages_plot_agreement_and_the_lineage_graph(page, stack, finished_jobs):
    open_page(page, stack, f"#/jobs/{finished_jobs['validation']['id']}", ".lineage-graph")
    agreement = page.locator("svg.hbar-chart")
    assert agreement.locator(".chart-bar").count() == 6  # A, B, primary, oracle, parent A vs B, the bound
    assert page.locator("table.checks tbody tr").count() == 10  # 8 reference checks, bound fraction, oracle
    screenshot(page, "ui-recombination")

    (child,) = finished_jobs["crossover"]["output_checkpoint_ids"]
    open_page(page, stack, f"#/checkpoints/{child}", ".lineage-graph")
    lineage = stack.client.get(f"/checkpoints/{child}/lineage").json()
    assert page.locator(".lineage-node").count() == len(lineage["nodes"]) == 3
    assert sorted(page.locator(".lineage-role").all_text_contents()) == ["parent_a", "parent_b"]
    assert page.locator(f'.lineage-root[data-id="{child}"]').count() == 1
    assert "8-32-32-4 layernorm relu, dropout 0.1" in page.locator(".facts").text_content()
    with page.expect_download() as exported:
        page.locator("button.export-onnx").click()
    assert exported.value.suggested_filename == f"{child}.onnx"
    screenshot(page, "ui-lineage")


def test_ptq_page_compares_float_and_int8_latency_and_size(page, stack, finished_jobs):
    open_page(page, stack, f"#/jobs/{finished_jobs['ptq']['id']}", "svg.bar-chart")
    bars = page.locator("svg.bar-chart")
    assert bars.count() == 2  # latency, size
    assert bars.nth(0).locator(".chart-bar").count() == 4 and bars.nth(1).locator(".chart-bar").count() == 4
    assert bars.nth(1).locator('.chart-bar[data-series="int8"]').count() == 2
    screenshot(page, "ui-ptq")


def test_a_failed_job_shows_its_error(page, stack, finished_jobs):
    open_page(page, stack, f"#/jobs/{finished_jobs['failed']['id']}", ".error-state")
    assert "RuntimeError: loss became NaN at epoch 2" in page.locator("#job-error").inner_text()
    assert page.locator("#job-status .status-failed").count() == 1
    screenshot(page, "ui-failed")


def test_search_job_page_charts_its_leaderboard_and_lists_its_trials(page, stack):
    parent_a, parent_b = parent(stack, 34), parent(stack, 35)
    job, report = run(
        stack, "search", parent_a_id=parent_a, parent_b_id=parent_b, preset="minimal", n_states=300, seed=3
    )
    open_page(page, stack, f"#/jobs/{job['id']}", "#job-outputs .job-row")  # the trials table comes after the report
    leaderboard = report["body"]["leaderboard"]
    chart = page.locator("svg.leaderboard-chart")
    assert chart.locator(".leaderboard-bar").count() == len(leaderboard)
    assert (
        chart.locator(".leaderboard-bar-baseline").count() == sum(row["is_parent_baseline"] for row in leaderboard) == 2
    )
    assert chart.locator(".leaderboard-row").first.get_attribute("data-trial") == leaderboard[0]["trial_id"]
    assert page.locator("#job-outputs .job-row").count() == len(job["children"]) > 0
    screenshot(page, "ui-search")


def test_leaderboard_sets_baselines_and_degenerate_trials_apart(page, stack):
    # A fixture report body through the page's own renderer: every kind of row, whatever a small search happens to give.
    open_page(page, stack, "", "main")
    page.evaluate(
        """(leaderboard) => {
            const box = document.createElement("div");
            box.id = "fixture-report";
            document.getElementById("app").replaceChildren(box);
            window.recomb.renderReport(box, {id: "rep_fixture", job_id: "job_fixture", kind: "search", passed: true, body: {kind: "search", passed: true, leaderboard, figures: []}});
        }""",
        LEADERBOARD,
    )
    chart = page.locator("svg.leaderboard-chart")
    assert chart.locator(".leaderboard-bar").count() == 5
    assert (
        chart.locator(".leaderboard-bar-baseline").count() == 2
        and chart.locator(".leaderboard-bar-degenerate").count() == 1
    )
    assert chart.locator(".leaderboard-marker").count() == 10
    assert chart.locator(".leaderboard-row").first.get_attribute("data-trial") == "t002-aligned-a0.5-short"
    screenshot(page, "ui-leaderboard")


@pytest.fixture
def keyed_api(stack):
    """A second API process on the same database, with API keys required."""
    port = free_port()
    env = stack.env | {"RECOMB_API_KEYS": "ui-test-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.commands", "api", "--port", str(port)],
        env=env,
        cwd=stack.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_for_the_tab(page, stack, keyed_api, finished_jobs):
    page.goto(f"{keyed_api}/ui")
    page.wait_for_selector("#key-form")
    screenshot(page, "ui-key-prompt")
    page.fill("#api-key", "ui-test-key")
    page.click("#key-form button")
    page.wait_for_selector(".job-row")
    assert page.evaluate("sessionStorage.getItem('recomb.apiKey')") == "ui-test-key"
    # The key also opens the job's event stream and report.
    page.goto(f"{keyed_api}/ui#/jobs/{finished_jobs['distill']['id']}")
    page.wait_for_selector("svg.line-chart")
    page.evaluate("sessionStorage.setItem('recomb.apiKey', 'wrong')")
    page.reload()
    page.wait_for_selector("#key-form")
    assert "refused" in page.locator("#key-form").inner_text()
