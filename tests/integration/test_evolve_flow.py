"""An evolution fanned out as child jobs: lineage to the founders, a summary per generation, one winner per seed."""

import numpy as np
import pytest

from core.artifacts import decode
from core.evolve import EvolveConfig, evolve_states, run_evolution
from tests.integration.test_recombination_flow import parent, run

pytestmark = pytest.mark.integration

EVOLUTION = {"population_size": 4, "generations": 2, "elite": 1, "finetune_epochs": 2, "seed": 5}
N_STATES = 200


def ancestors(stack, checkpoint_id: str) -> tuple[set[str], list[dict]]:
    lineage = stack.client.get(f"/checkpoints/{checkpoint_id}/lineage").json()
    return {node["id"] for node in lineage["nodes"]}, lineage["edges"]


def test_evolution_breeds_generations_of_child_jobs_and_matches_the_in_process_run(stack):
    founders = [parent(stack, 31), parent(stack, 32)]
    job, report = run(stack, "evolve", population=founders, n_states=N_STATES, **EVOLUTION)
    body = report["body"]
    assert len(job["children"]) == 2 * 3  # two generations of population_size - elite children
    generations = body["generations"]
    assert [row["generation"] for row in generations] == [0, 1, 2]
    best = [row["best_fitness"]["selection"] for row in generations]
    assert best == sorted(best)  # elitism: the best (chosen on selection states) never falls
    assert body["best_checkpoint_id"] == generations[-1]["best_checkpoint_id"]
    assert body["passed"] == (body["best"]["fitness"]["report"] >= body["founders_best"]["fitness"]["report"])
    children = [member for row in generations[1:] for member in row["members"] if member["origin"] == "child"]
    assert all(member["checkpoint_id"] and len(member["parents"]) == 2 for member in children)

    # The winner's lineage reaches the founders through crossover edges.
    winner = body["best_checkpoint_id"]
    if winner not in founders:
        nodes, edges = ancestors(stack, winner)
        assert set(founders) & nodes
        assert {edge["role"] for edge in edges} == {"parent_a", "parent_b"}
    # While generation 2 ran, the job showed the finished ones.
    summary = stack.client.get(f"/jobs/{job['id']}").json()["summary"]
    assert summary["generation"] == 2 and [row["generation"] for row in summary["generations"]] == [0, 1]

    # Same seed, same winner as the whole loop in one process.
    networks = [decode(stack.client.get(f"/checkpoints/{ref}/file").content) for ref in founders]
    config = EvolveConfig(**EVOLUTION)
    local = run_evolution(networks, config, evolve_states(config, networks[0].arch.input_dim, N_STATES))
    assert local.best.sha256 == body["best"]["sha256"]
    assert np.isclose(local.best.score.report, body["best"]["fitness"]["report"])


def test_evolution_inputs_are_checked_before_it_is_queued(stack):
    founders = [parent(stack, 33), parent(stack, 34), parent(stack, 35)]
    too_many_targets = stack.client.post("/jobs/evolve", json={"population": founders})
    assert too_many_targets.status_code == 422 and "targets is required" in too_many_targets.text
    unknown = stack.client.post("/jobs/evolve", json={"population": [founders[0], "ckpt_missing"]})
    assert unknown.status_code == 404
    wider = parent(stack, 36, hidden=64)
    mixed = stack.client.post("/jobs/evolve", json={"population": [founders[0], wider]})
    assert mixed.status_code == 422 and "population[1]" in mixed.text
    lone = stack.client.post("/jobs/evolve", json={"population": founders[:1]})
    assert lone.status_code == 422
