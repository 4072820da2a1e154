"""An evolution's family tree and fitness per generation on /ui, in headless Chromium against the real service.

The tree must never draw one member's box over another's: checked on the
boxes' rendered bounding boxes, for a real 5 generations x 8 evolution and
for a large (collapsed) one. Screenshots go to the test's temporary directory.
"""

import itertools

import pytest

from tests.integration import test_ui
from tests.integration.test_recombination_flow import parent, run
from tests.integration.test_ui import open_page

# The browser fixtures of the dashboard tests: one Chromium per module, a fresh page per test that fails on JS errors.
browser, page = test_ui.browser, test_ui.page

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]

EVOLUTION = {"population_size": 8, "generations": 5, "elite": 2, "finetune_epochs": 2, "n_states": 300, "seed": 21}
# The page collapses a generation of more than this many members (family.js MAX_SHOWN).
MAX_SHOWN = 12


def node_boxes(page) -> list[dict]:
    """Every family-tree box as drawn: its member (or collapsed generation) and its rendered rectangle."""
    return page.evaluate(
        """() => [...document.querySelectorAll("svg.family-tree .family-node")].map((node) => {
            const box = node.querySelector("rect").getBoundingClientRect();
            return {member: node.dataset.member || null, generation: Number(node.dataset.generation),
                    hidden: Number(node.dataset.members || 0), classes: node.getAttribute("class"),
                    x: box.x, y: box.y, width: box.width, height: box.height};
        })"""
    )


def overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of boxes whose rectangles share any area."""
    return [
        (f"{a['generation']}:{a['member']}", f"{b['generation']}:{b['member']}")
        for a, b in itertools.combinations(boxes, 2)
        if a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    ]


def test_a_real_evolution_draws_its_family_tree_without_overlaps_and_plots_fitness(page, stack, tmp_path):
    founders = [parent(stack, 61), parent(stack, 62)]
    job, report = run(stack, "evolve", population=founders, **EVOLUTION)
    body = report["body"]
    open_page(page, stack, f"#/jobs/{job['id']}", "svg.family-tree")
    page.screenshot(path=str(tmp_path / "family-tree.png"), full_page=True)

    boxes = node_boxes(page)
    expected = [(row["generation"], member["member_id"]) for row in body["generations"] for member in row["members"]]
    assert sorted((box["generation"], box["member"]) for box in boxes) == sorted(expected)
    assert len(boxes) == 2 + 5 * 8 and overlapping(boxes) == []
    # One column per generation, left to right.
    columns = {box["generation"]: box["x"] for box in boxes}
    assert [columns[index] for index in range(6)] == sorted(columns.values()) and len(set(columns.values())) == 6
    winner = page.locator("svg.family-tree .family-winner")
    assert winner.count() == 5 - body["best"]["generation"] + 1  # its own box and one per generation it was carried
    assert {winner.nth(i).get_attribute("data-member") for i in range(winner.count())} == {body["best"]["member_id"]}
    # A line per parent of every child, and one from every elite to itself a generation earlier.
    lines = sum(2 if member["origin"] == "child" else 1 for row in body["generations"][1:] for member in row["members"])
    assert page.locator("svg.family-tree .family-edge").count() == lines
    assert page.locator("svg.family-tree .family-edge-elite").count() == 5 * EVOLUTION["elite"]

    chart = page.locator("svg.line-chart", has_text="Fitness per generation")
    assert chart.locator(".chart-line").count() == 2 and chart.locator(".chart-point").count() == 2 * 6
    assert [chart.locator(".chart-line").nth(i).get_attribute("data-series") for i in range(2)] == ["best", "mean"]


def large_evolution(generations: int, members: int) -> dict:
    """An evolve report body of ``generations`` generations of ``members``, in the report's own shape."""
    rows, previous = [], []
    for index in range(generations + 1):
        row = []
        for slot in range(members):
            parents = [previous[slot % len(previous)], previous[(slot * 7 + 3) % len(previous)]] if previous else []
            fitness = 0.3 + 0.5 * (index / generations) - 0.004 * slot
            row.append(
                {
                    "member_id": f"g{index}-{slot}",
                    "generation": index,
                    "slot": slot,
                    "parents": parents,
                    "origin": "founder" if index == 0 else "child",
                    "operators": None,
                    "score": {"selection": fitness, "report": fitness - 0.01},
                    "checkpoint_id": None,
                }
            )
        previous = [member["member_id"] for member in row]
        best = max(row, key=lambda member: member["score"]["selection"])
        rows.append(
            {
                "generation": index,
                "best_member": best["member_id"],
                "best_fitness": best["score"],
                "mean_fitness": {
                    key: sum(member["score"][key] for member in row) / members for key in ("selection", "report")
                },
                "members": row,
            }
        )
    winner = rows[-1]["members"][0]
    return {
        "kind": "evolve",
        "passed": True,
        "generations": rows,
        "best": {"member_id": winner["member_id"], "generation": generations},
        "figures": [],  # served with every report (``app.contracts.report_models``); none needed here
    }


def test_a_large_evolution_is_collapsed_per_generation_without_overlaps(page, stack, tmp_path):
    body = large_evolution(generations=5, members=40)
    open_page(page, stack, "", "main")
    page.evaluate(
        """(body) => {
            const box = document.createElement("div");
            document.getElementById("app").replaceChildren(box);
            const report = {id: "rep_fixture", job_id: "job_fixture", kind: "evolve", passed: true, body};
            window.recomb.renderReport(box, report);
        }""",
        body,
    )
    page.wait_for_selector("svg.family-tree")
    page.screenshot(path=str(tmp_path / "family-tree-collapsed.png"), full_page=True)

    boxes = node_boxes(page)
    assert overlapping(boxes) == []
    for index in range(6):
        column = [box for box in boxes if box["generation"] == index]
        shown = [box for box in column if box["member"]]
        (collapsed,) = [box for box in column if "family-collapsed" in box["classes"]]
        assert 1 <= len(shown) <= MAX_SHOWN and len(shown) + collapsed["hidden"] == 40
    # The winner's ancestry is what stays visible: the winner itself, and its two parents a generation before.
    members = {member["member_id"]: member for row in body["generations"] for member in row["members"]}
    shown_ids = {box["member"] for box in boxes if box["member"]}
    winner = body["best"]["member_id"]
    assert winner in shown_ids and set(members[winner]["parents"]) <= shown_ids
