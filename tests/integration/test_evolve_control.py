"""An evolution on each stack: lineage with mutation notes, a cancel mid-generation, a resume after a restart."""

from __future__ import annotations

import time

import pytest

from core.artifacts import decode
from core.evolve import ChildSpec, EvolveConfig, evolve_states, run_evolution
from tests.integration.faults import wait_until
from tests.integration.stack import TERMINAL, running_stack
from tests.integration.test_recombination_flow import parent, run

pytestmark = pytest.mark.integration

# Four children per generation of about 200 epochs each: a generation is seconds long, so it is caught in flight.
CANCELLED_EVOLUTION = {"population_size": 5, "generations": 3, "elite": 1, "finetune_epochs": 200, "seed": 7}
# Three children per generation, about a second each: short, yet a stop lands between generations' children.
RESUMED_EVOLUTION = {"population_size": 4, "generations": 3, "elite": 1, "finetune_epochs": 40, "seed": 11}
N_STATES = 1000
JOB_TIMEOUT_S = 300.0


def submit_evolution(client, founders: list[str], evolution: dict) -> str:
    response = client.post(
        "/jobs/evolve", json={"population": founders, "targets": founders[:2], "n_states": N_STATES, **evolution}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def children_of(client, job_id: str) -> list[dict]:
    page = client.get("/jobs", params={"parent_job_id": job_id, "limit": 500}).json()
    assert page["total"] == len(page["items"])
    return page["items"]


def test_lineage_reaches_the_founders_through_crossover_edges_with_a_mutation_note_per_child(stack):
    founders = [parent(stack, 45), parent(stack, 46)]
    evolution = {"population_size": 4, "generations": 3, "elite": 1, "finetune_epochs": 2, "mutation_sigma": 0.05}
    job, report = run(stack, "evolve", population=founders, n_states=200, seed=9, **evolution)
    body = report["body"]
    config = EvolveConfig(**evolution, seed=9)
    members = {m["checkpoint_id"]: m for row in body["generations"] for m in row["members"]}
    # The last generation's fittest child: the winner itself unless an elite kept the lead.
    last = max(
        (m for m in body["generations"][-1]["members"] if m["origin"] == "child"), key=lambda m: m["score"]["selection"]
    )
    lineage = stack.client.get(f"/checkpoints/{last['checkpoint_id']}/lineage").json()
    nodes = {node["id"] for node in lineage["nodes"]}
    assert set(founders) <= nodes and {edge["role"] for edge in lineage["edges"]} == {"parent_a", "parent_b"}
    # Exactly the ancestry the report records, member by member through their parents.
    by_member = {m["member_id"]: m["checkpoint_id"] for m in members.values()}
    ancestry, pending = set(), [last["member_id"]]
    while pending:
        current = pending.pop()
        ancestry.add(by_member[current])
        pending.extend(members[by_member[current]]["parents"])
    assert nodes == ancestry
    made = nodes - set(founders)
    for child_id in made:
        member = members[child_id]
        into = {edge["role"]: edge for edge in lineage["edges"] if edge["child"] == child_id}
        # Its two edges name its parents (as the report records them) and the child job that made it.
        assert [members[into[role]["parent"]]["member_id"] for role in ("parent_a", "parent_b")] == member["parents"]
        assert into["parent_a"]["job_id"] == into["parent_b"]["job_id"]
        spec = ChildSpec.from_dict(stack.client.get(f"/jobs/{into['parent_a']['job_id']}").json()["params"]["child"])
        # The mutation note, on the stored checkpoint: the generation's decayed sigma and the child's own seed.
        metadata = decode(stack.client.get(f"/checkpoints/{child_id}/file").content).metadata
        note = {"sigma": config.mutation_sigma_at(member["generation"]), "seed": spec.mutation_seed}
        assert metadata["operators"]["mutation"] == member["operators"]["mutation"] == note
        assert metadata["parents"] == member["parents"] and spec.member_id == member["member_id"]
    seeds = [members[child_id]["operators"]["mutation"]["seed"] for child_id in made]
    assert len(set(seeds)) == len(seeds)


def test_cancel_stops_the_generation_in_flight_and_queues_nothing_more(stack):
    founders = [parent(stack, seed) for seed in (41, 42, 43, 44)]
    job_id = submit_evolution(stack.client, founders, CANCELLED_EVOLUTION)

    def generation_in_flight() -> list[dict] | None:
        children = children_of(stack.client, job_id)
        early = [child for child in children if child["status"] == "running" and child["progress"] < 0.5]
        queued = [child for child in children if child["status"] == "queued"]
        return children if early and queued else None

    # A child just started (it cannot finish before it sees the cancel) and another still queued.
    in_flight = wait_until(
        generation_in_flight, JOB_TIMEOUT_S, "a generation with a child running early and one queued"
    )
    cancelled = stack.client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    job = stack.wait_job(job_id, timeout=JOB_TIMEOUT_S)
    assert job["status"] == "cancelled" and job["report_id"] is None

    unfinished = {
        child["id"]
        for child in in_flight
        if child["status"] == "queued" or (child["status"] == "running" and child["progress"] < 0.5)
    }
    children = wait_until(
        lambda: (rows := children_of(stack.client, job_id)) and all(row["status"] in TERMINAL for row in rows) and rows,
        JOB_TIMEOUT_S,
        "every child to finish",
    )
    statuses = {child["id"]: child["status"] for child in children}
    assert unfinished and all(statuses[child_id] == "cancelled" for child_id in unfinished)
    assert set(statuses.values()) <= {"succeeded", "cancelled"}
    # Nothing is queued afterwards: the reconciler (every second) and any late wake-up leave the children as they are.
    time.sleep(4 * float(stack.env["RECOMB_RECONCILE_INTERVAL_S"]))
    later = children_of(stack.client, job_id)
    assert {child["id"]: child["status"] for child in later} == statuses
    assert stack.client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def restartable(request, tmp_path_factory):
    """A stack of its own (API and two workers) that a test may stop and start again."""
    with running_stack(request.param, tmp_path_factory.mktemp(f"restartable-{request.param}")) as running:
        yield running


def test_a_restarted_stack_resumes_from_the_last_finished_generation_to_the_same_winner(restartable):
    stack = restartable
    founders = [parent(stack, seed) for seed in (51, 52, 53, 54)]
    job_id = submit_evolution(stack.client, founders, RESUMED_EVOLUTION)
    # The summary names generation 2 once generation 1 has finished and generation 2's children are queued.
    wait_until(
        lambda: (stack.client.get(f"/jobs/{job_id}").json()["summary"] or {}).get("generation", 0) >= 2,
        JOB_TIMEOUT_S,
        "generation 1 to finish",
        interval_s=0.05,
    )
    before_stop = {child["id"]: child for child in children_of(stack.client, job_id)}
    stack.stop()
    stack.start(workers=2)
    assert stack.client.get(f"/jobs/{job_id}").json()["status"] not in TERMINAL

    job = stack.wait_job(job_id, timeout=JOB_TIMEOUT_S)
    assert job["status"] == "succeeded", job["error"]
    body = stack.client.get(f"/reports/{job['report_id']}").json()["body"]
    children = children_of(stack.client, job_id)
    config = EvolveConfig(**RESUMED_EVOLUTION)
    per_generation = config.population_size - config.elite
    # One child job per planned child, each with its one checkpoint: nothing made twice.
    made = sorted((child["params"]["child"]["generation"], child["params"]["child"]["slot"]) for child in children)
    assert made == [
        (g, s) for g in range(1, config.generations + 1) for s in range(config.elite, config.population_size)
    ]
    assert len(children) == config.generations * per_generation
    assert all(child["status"] == "succeeded" and len(child["output_checkpoint_ids"]) == 1 for child in children)
    # The children finished before the stop were read back, not run again.
    finished_before = [child for child in before_stop.values() if child["status"] == "succeeded"]
    assert len(finished_before) >= per_generation
    after = {child["id"]: child for child in children}
    for child in finished_before:
        again = after[child["id"]]
        assert (again["finished_at"], again["attempts"], again["output_checkpoint_ids"]) == (
            child["finished_at"],
            child["attempts"],
            child["output_checkpoint_ids"],
        )
    reported = {member["checkpoint_id"] for row in body["generations"][1:] for member in row["members"]}
    assert {child["output_checkpoint_ids"][0] for child in children} <= reported

    # The same winner as the same evolution run uninterrupted, in one process.
    networks = [decode(stack.client.get(f"/checkpoints/{ref}/file").content) for ref in founders]
    uninterrupted = run_evolution(
        networks, config, evolve_states(config, networks[0].arch.input_dim, N_STATES), targets=networks[:2]
    )
    assert uninterrupted.best.sha256 == body["best"]["sha256"]
    assert [row["best_fitness"] for row in body["generations"]] == [
        {"selection": generation.best.score.selection, "report": generation.best.score.report}
        for generation in uninterrupted.generations
    ]
