"""Comparing reports on /ui, in headless Chromium against the real service: tick two reports, press Compare, and the
figures table shows what ``GET /reports/compare`` returns, with the curves overlaid.
"""

import pytest

from tests.integration import test_ui
from tests.integration.test_recombination_flow import parent, run
from tests.integration.test_ui import open_page, screenshot

# The browser fixtures of the dashboard tests: one Chromium per module, a fresh page per test that fails on JS errors.
browser, page = test_ui.browser, test_ui.page

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


@pytest.fixture(scope="module")
def two_distillations(stack) -> list[dict]:
    """The reports of two distillations of one teacher, trained for different numbers of epochs."""
    teacher = parent(stack, 41, hidden=64)
    states = {"synthetic": {"n_states": 1000, "seed": 5}}
    return [
        run(stack, "distill", teacher_id=teacher, epochs=epochs, seed=epochs, states=states, tags=["compare"])[1]
        for epochs in (2, 5)
    ]


def test_ticking_two_reports_and_pressing_compare_shows_the_apis_comparison(page, stack, two_distillations):
    first, second = two_distillations
    open_page(page, stack, "#/reports", ".report-row")
    button = page.locator("#compare-button")
    assert button.is_disabled()
    page.locator(f'.compare-select[data-id="{first["id"]}"]').check()
    assert button.is_disabled()  # one report is nothing to compare
    page.locator(f'.compare-select[data-id="{second["id"]}"]').check()
    button.click()
    page.wait_for_selector(".compare-table .compare-row")
    assert page.evaluate("window.location.hash") == f"#/compare/{first['id']},{second['id']}"

    expected = stack.client.get("/reports/compare", params={"ids": f"{first['id']},{second['id']}"}).json()
    format_number = "(value) => window.RecombCharts.formatNumber(value)"
    shown = page.evaluate(
        """() => [...document.querySelectorAll(".compare-table .compare-row")].map((row) => ({
            name: row.dataset.figure,
            values: [...row.querySelectorAll(".compare-value")].map((cell) => cell.textContent),
            differences: [...row.querySelectorAll(".compare-diff")].map((cell) => cell.textContent),
        }))"""
    )
    assert [row["name"] for row in shown] == [figure["name"] for figure in expected["figures"]]
    agreement = next(f for f in expected["figures"] if f["name"] == "held_out.action_agreement")
    row = next(r for r in shown if r["name"] == "held_out.action_agreement")
    assert row["values"] == [page.evaluate(format_number, value) for value in agreement["values"]]
    assert row["differences"] == [page.evaluate(format_number, agreement["differences"][1])]
    epochs = next(r for r in shown if r["name"] == "best_epoch")
    assert epochs["values"] == [str(first["body"]["best_epoch"]), str(second["body"]["best_epoch"])]

    # One chart per curve name, each with one line per report, as long as its curves.
    charts = page.locator(".compare-charts svg.line-chart")
    curve_names = {name for epoch in first["body"]["curves"] for name in epoch if name != "epoch"}
    plotted = {
        name
        for name in curve_names
        if any(epoch[name] is not None for report in (first, second) for epoch in report["body"]["curves"])
    }
    assert charts.count() == len(plotted)
    lines = page.locator('.compare-charts svg[aria-label="train_loss per epoch"] path.chart-line')
    assert sorted(lines.evaluate_all("(paths) => paths.map((p) => p.dataset.series)")) == sorted(
        [first["id"], second["id"]]
    )
    screenshot(page, "ui-compare")
