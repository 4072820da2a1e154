"""The crossover search fanned out as child jobs, on each stack."""

import time

import pytest

from tests.integration.test_recombination_flow import parent, run

pytestmark = pytest.mark.integration


def leaderboard_key(report: dict) -> list[tuple]:
    return [(row["trial_id"], row["rank"], row["primary_metric"]) for row in report["body"]["leaderboard"]]


def test_minimal_search_ranks_children_with_parents_and_is_deterministic(stack):
    parent_a, parent_b = parent(stack, 21), parent(stack, 22)
    job, report = run(
        stack, "search", parent_a_id=parent_a, parent_b_id=parent_b, preset="minimal", n_states=300, seed=3
    )
    body = report["body"]
    assert len(job["children"]) == 9
    rows = body["leaderboard"]
    assert [row["rank"] for row in rows] == list(range(1, 12))
    assert sum(row["is_parent_baseline"] for row in rows) == 2
    # Ranked, parents among children, by the selection states; the reported figures are the held-out ones.
    scores = [row["selection_primary_metric"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert [row["primary_metric"] for row in rows] != scores
    assert set(body["states"]) == {"train", "selection", "evaluation"}
    assert len(body["manifest"]) == 9 and all(entry["torch_version"] for entry in body["manifest"])
    winner = body["winner"]
    lineage = stack.client.get(f"/checkpoints/{winner['checkpoint_id']}/lineage").json()
    roles = {edge["role"]: edge["parent"] for edge in lineage["edges"]}
    assert roles == {"parent_a": parent_a, "parent_b": parent_b}
    assert body["scheduler"]["total_finetune_epochs"] == 3 * (5 + 10 + 20)

    _, again = run(stack, "search", parent_a_id=parent_a, parent_b_id=parent_b, preset="minimal", n_states=300, seed=3)
    assert leaderboard_key(again) == leaderboard_key(report)


def test_halving_over_int8_parents_stops_trials_at_rungs(stack):
    parent_a, parent_b = parent(stack, 23), parent(stack, 24)
    int8 = [
        run(stack, "ptq", checkpoint_id=checkpoint)[0]["output_checkpoint_ids"][0]
        for checkpoint in (parent_a, parent_b)
    ]
    queued = stack.client.post(
        "/jobs/search",
        json={
            "parent_a_id": int8[0],
            "parent_b_id": int8[1],
            "preset": "default",
            "scheduler": "halving",
            "n_states": 200,
        },
    )
    seen_progress = set()
    deadline = time.monotonic() + 120
    while (job := stack.client.get(f"/jobs/{queued.json()['id']}").json())["status"] not in (
        "succeeded",
        "failed",
    ) and time.monotonic() < deadline:
        seen_progress.add(job["progress"])
        time.sleep(0.02)
    assert job["status"] == "succeeded", job["error"]
    assert any(0.0 < progress < 1.0 for progress in seen_progress)  # trials done / total, while it ran
    report = stack.client.get(f"/reports/{job['report_id']}").json()
    scheduler = report["body"]["scheduler"]
    assert len(scheduler["rungs"]) >= 2 and scheduler["rungs"][-1]["final"]
    assert min(scheduler["stopped_at_rung"].values()) == 0 < max(scheduler["stopped_at_rung"].values())
    assert scheduler["total_finetune_epochs"] < 0.5 * 7 * (5 + 20)
    assert report["body"]["winner"]["checkpoint_id"]
    # While the last rung ran, the job carried the leaderboard of the earlier rungs.
    partial = stack.client.get(f"/jobs/{job['id']}").json()["summary"]
    assert job["progress"] == 1.0
    assert partial["rung"] == len(scheduler["rungs"]) - 1 and partial["trials_done"] >= 14
    assert sum(not row["is_parent_baseline"] for row in partial["leaderboard"]) == 14


def test_bad_search_params_are_422(stack):
    parent_a, small = parent(stack, 25), parent(stack, 26, hidden=16)
    assert stack.client.post("/jobs/search", json={"parent_a_id": parent_a, "parent_b_id": small}).status_code == 422
    huge = stack.client.post(
        "/jobs/search",
        json={
            "parent_a_id": parent_a,
            "parent_b_id": parent_a,
            "preset": "custom",
            "alpha_values": [i / 100 for i in range(64)],
        },
    )
    assert huge.status_code == 422 and "500" in str(huge.json()["detail"])
    capped = stack.client.post(
        "/jobs/search",
        json={
            "parent_a_id": parent_a,
            "parent_b_id": parent_a,
            "preset": "custom",
            "alpha_values": [i / 100 for i in range(64)],
            "max_runs": 2,
        },
    )
    assert capped.status_code == 202
    stack.client.post(f"/jobs/{capped.json()['id']}/cancel")
    regime = stack.client.post(
        "/jobs/search",
        json={"parent_a_id": parent_a, "parent_b_id": parent_a, "preset": "custom", "finetune_regimes": ["forever"]},
    )
    assert regime.status_code == 422 and "medium" in str(regime.json()["detail"])
    assert stack.client.post("/jobs/search-trial", json={}).status_code == 404
