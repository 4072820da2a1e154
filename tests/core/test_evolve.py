"""Recombination across generations: config, planning, one child, a whole run, and its report."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import random
import statistics
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from core.artifacts import Checkpoint, encode, float_checkpoint, sha256_hex
from core.evolve import (
    ChildSpec,
    EvolveConfig,
    Generation,
    Member,
    Scorer,
    assemble_generation,
    describe_states,
    diversity,
    evolve_states,
    founders_generation,
    mutate,
    plan_generation,
    run_child,
    run_evolution,
)
from core.mdp import LinearMDP, greedy_returns, initial_states
from core.networks import QNetworkArch, init_network
from core.quantize import PTQConfig, inference_forward, quantize
from core.search import SearchConfig, search_states
from core.states import derive_seed
from core.validate import RecombinationValidationConfig, validate_recombination
from tests.core import baseline

# Small enough for a unit test: 4 members, 2 generations, 2 fine-tune epochs per child on 300 states.
SMALL = EvolveConfig(population_size=4, generations=2, elite=1, tournament_size=2, finetune_epochs=2, seed=3)
N_STATES = 300


@pytest.fixture(scope="module")
def founders() -> list[Checkpoint]:
    """Students of two different teachers (the baseline recipe)."""
    return [baseline.student(0), baseline.student(1)]


@pytest.fixture(scope="module")
def states():
    return evolve_states(SMALL, 8, N_STATES)


@pytest.fixture(scope="module")
def small_run(founders, states):
    return run_evolution(founders, SMALL, states)


def test_defaults_are_the_issues():
    config = EvolveConfig()
    assert (config.population_size, config.generations, config.elite) == (8, 5, 2)
    assert config.crossover_modes == ("aligned", "weighted") and config.fitness == "min_agreement"
    assert config.finetune_regime == "lr_high" and config.epochs_per_child == 5
    assert config.mutation_sigma_at(1) == config.mutation_sigma
    assert config.mutation_sigma_at(3) == pytest.approx(config.mutation_sigma * config.mutation_decay**2)
    assert EvolveConfig(crossover_modes=["weighted"], alpha_values=[0.5]).crossover_modes == ("weighted",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"population_size": 1}, r"population_size must be an integer in \[2, 64\], got 1"),
        ({"population_size": 65}, r"population_size must be an integer in \[2, 64\], got 65"),
        ({"generations": 0}, r"generations must be an integer in \[1, 100\], got 0"),
        ({"elite": 0}, r"elite must be an integer in \[1, 63\], got 0"),
        ({"elite": 8}, r"elite must be an integer in \[1, 7\], got 8"),
        ({"tournament_size": 9}, r"tournament_size must be an integer in \[1, 8\], got 9"),
        (
            {"crossover_modes": ("aligned", "blend")},
            r"crossover_modes must be distinct names from random, layer, weighted, aligned, got \['aligned', 'blend'\]",
        ),
        ({"crossover_modes": ()}, r"crossover_modes must be distinct names .*, got \[\]"),
        ({"alpha_values": (0.5, 1.2)}, r"alpha_values\[1\] must be a number in \[0, 1\], got 1.2"),
        ({"alpha_values": (0.5, 0.5)}, r"alpha_values must be distinct numbers, got \[0.5, 0.5\]"),
        ({"mutation_sigma": -0.1}, r"mutation_sigma must be a number in \[0, 1.0\], got -0.1"),
        ({"mutation_decay": 0}, r"mutation_decay must be a number in \(0, 1\], got 0"),
        ({"finetune_regime": "forever"}, r"finetune_regime must be one of short, medium, long, lr_high, got 'forever'"),
        (
            {"finetune_regime": "short_qat"},
            r"finetune_regime must be one of short, medium, long, lr_high, got 'short_qat'",
        ),
        ({"finetune_epochs": 0}, r"finetune_epochs must be an integer in \[1, 1000\] or None, got 0"),
        ({"fitness": "speed"}, r"fitness must be one of min_agreement, mean_agreement, mdp_return, got 'speed'"),
        ({"mdp_episodes": 0}, r"mdp_episodes must be an integer in \[1, 10000\], got 0"),
        ({"seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
        ({"seed": True}, r"seed must be an integer in \[0, 4294967295\], got True"),
    ],
)
def test_invalid_configs_name_the_field_and_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        EvolveConfig(**fields)


def test_population_checks_name_what_is_wrong(founders, states):
    with pytest.raises(ValueError, match="founders must hold 2 to 64 checkpoints, got 1"):
        founders_generation(founders[:1], founders, states, SMALL)
    with pytest.raises(ValueError, match="targets must hold 1 or 2 checkpoints .*, got 3"):
        founders_generation(founders, [*founders, founders[0]], states, SMALL)
    mismatch = r"founders\[1\] is 8-64-64-4 layernorm relu but founders\[0\] is 8-32-32-4 layernorm relu: hidden_sizes \[64, 64\] vs \[32, 32\]"
    with pytest.raises(ValueError, match=mismatch):
        founders_generation([founders[0], baseline.teacher(0)], founders, states, SMALL)
    narrow = float_checkpoint(
        init_network(QNetworkArch(input_dim=8, hidden_sizes=(32, 32), output_dim=3), 0).state_dict()
    )
    with pytest.raises(
        ValueError,
        match=r"targets\[1\] is 8-32-32-3 layernorm relu but the founders are 8-32-32-4 layernorm relu: input/output dims differ",
    ):
        founders_generation(founders, [founders[0], narrow], states, SMALL)


def test_founders_can_be_bred_toward_wider_teachers(founders, states):
    teachers = [baseline.teacher(0), baseline.teacher(1)]
    run = run_evolution(founders, dataclasses.replace(SMALL, generations=1), states, targets=teachers)
    founders_scores = [member.score for member in run.generations[0].members]
    # Each student agrees with its own teacher far more than with the other; scores are against the teachers.
    assert founders_scores[0].selection_agreements[0] > 0.8 > founders_scores[0].selection_agreements[1]
    assert run.best.score.selection > max(score.selection for score in founders_scores)
    assert run.best.checkpoint.arch == founders[0].arch


def test_states_are_the_search_draws_and_each_purpose_is_named(states):
    same = search_states(SearchConfig(seed=SMALL.seed), 8, N_STATES)
    assert all(
        np.array_equal(getattr(states, name), getattr(same, name)) for name in ("train", "selection", "evaluation")
    )
    rows = [set(map(bytes, array)) for array in (states.train, states.selection, states.evaluation)]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    described = describe_states(SMALL, states)
    assert "tournaments, elites and the winner" in described["selection"]
    assert "no choice looks at them" in described["evaluation"]
    mdp = describe_states(dataclasses.replace(SMALL, fitness="mdp_return"), states)
    assert "tournaments, elites and the winner" in mdp["selection_episodes"]
    assert "no choice looks at them" in mdp["evaluation_episodes"] and "no choice looks at them" in mdp["selection"]


def test_same_seed_same_run_whatever_the_order_children_finish_in(founders, states, small_run):
    def shuffled(make_child, specs):
        # Children made last-first and handed back in a shuffled order, as parallel jobs finish.
        made = [make_child(spec) for spec in reversed(specs)]
        random.Random(len(specs)).shuffle(made)
        return made

    again = run_evolution(founders, SMALL, states, child_map=shuffled)
    assert [[member.to_dict() for member in generation.members] for generation in again.generations] == [
        [member.to_dict() for member in generation.members] for generation in small_run.generations
    ]
    assert again.best.sha256 == small_run.best.sha256 == sha256_hex(encode(small_run.best.checkpoint))
    other_seed = run_evolution(founders, dataclasses.replace(SMALL, seed=4), states)
    assert [m.sha256 for m in other_seed.generations[1].members[1:]] != [
        m.sha256 for m in small_run.generations[1].members[1:]
    ]


def _child_in_another_process(arguments: tuple) -> Member:
    spec, parent_a, parent_b, targets, states = arguments
    return run_child(spec, parent_a, parent_b, targets, states, SMALL)


def test_children_made_by_two_worker_processes_are_bit_identical(founders, states, small_run):
    plan = small_run.plans[0]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        made = list(
            pool.map(_child_in_another_process, [(spec, *founders, founders, states) for spec in plan.children])
        )
    generation = assemble_generation(plan, small_run.generations[0], reversed(made))
    assert [member.sha256 for member in generation.members] == [
        member.sha256 for member in small_run.generations[1].members
    ]
    assert generation.members == small_run.generations[1].members


def test_a_child_is_bit_identical_at_any_thread_count(founders, states, small_run):
    spec = small_run.plans[0].children[0]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        child = run_child(spec, founders[0], founders[1], founders, states, SMALL)
    finally:
        torch.set_num_threads(previous)
    assert child == small_run.generations[1].members[1]


def test_elites_carry_over_unchanged_and_the_best_never_falls(founders, states):
    config = dataclasses.replace(
        SMALL, population_size=5, generations=3, elite=2, mutation_sigma=0.2, finetune_epochs=1
    )
    run = run_evolution(founders, config, states)
    best = [generation.best.score.selection for generation in run.generations]
    assert best == sorted(best) and best[-1] > best[0]
    for previous, generation in zip(run.generations, run.generations[1:]):
        top = previous.ranked()[: config.elite]
        assert generation.members[: config.elite] == tuple(top)
        assert [member.sha256 for member in generation.members[: config.elite]] == [member.sha256 for member in top]
        assert [generation.origin_of(member) for member in generation.members] == ["elite"] * 2 + ["child"] * 3
        assert len({member.sha256 for member in generation.members}) == 5


def test_lineage_records_parents_operators_and_reaches_the_founders(small_run):
    ids_by_generation = [{member.member_id for member in generation.members} for generation in small_run.generations]
    for index, generation in enumerate(small_run.generations[1:], start=1):
        for member in generation.members:
            if generation.origin_of(member) != "child":
                continue
            assert member.member_id == f"g{index}-{member.slot}" and len(member.parents) == 2
            assert member.parents[0] != member.parents[1] and set(member.parents) <= ids_by_generation[index - 1]
            operators = member.operators
            assert (
                operators["crossover"]["mode"] in SMALL.crossover_modes
                and operators["crossover"]["alpha"] in SMALL.alpha_values
            )
            assert operators["crossover"]["seed"] is None  # aligned and weighted draw nothing
            assert operators["mutation"]["sigma"] == pytest.approx(SMALL.mutation_sigma_at(index))
            assert (
                operators["finetune"]["epochs"] == 2 == member.finetune_epochs
                and operators["finetune"]["teacher_weight_a"] == 0.5
            )
            metadata = member.checkpoint.metadata
            assert (
                metadata["parents"] == list(member.parents)
                and metadata["operators"] == operators
                and metadata["target"] == "both"
            )
    members = {member.member_id: member for generation in small_run.generations for member in generation.members}
    frontier, ancestors = [small_run.best.member_id], set()
    while frontier:
        current = members[frontier.pop()]
        ancestors.add(current.member_id)
        frontier.extend(current.parents)
    assert {"g0-0", "g0-1"} <= ancestors and small_run.best.generation >= 1
    assert small_run.finetune_epochs == 2 * 3 * 2  # 2 generations x 3 children x 2 epochs


def test_min_agreement_is_the_searchs_primary_metric_exactly(founders, states, small_run):
    child = small_run.generations[2].members[-1]
    evaluation = RecombinationValidationConfig(report_only=True)
    on_selection = validate_recombination(child.checkpoint, *founders, states.selection, evaluation)["summary"]
    on_evaluation = validate_recombination(child.checkpoint, *founders, states.evaluation, evaluation)["summary"]
    assert child.score.selection == on_selection["primary_metric"]
    assert child.score.report == on_evaluation["primary_metric"]
    assert child.score.selection_agreements == (
        on_selection["child_agrees_with_parent_a"],
        on_selection["child_agrees_with_parent_b"],
    )
    assert child.score.report_agreements == (
        on_evaluation["child_agrees_with_parent_a"],
        on_evaluation["child_agrees_with_parent_b"],
    )
    mean = Scorer.build(dataclasses.replace(SMALL, fitness="mean_agreement"), founders, states).score(child.checkpoint)
    assert mean.selection == statistics.fmean(child.score.selection_agreements) and mean.report == statistics.fmean(
        child.score.report_agreements
    )
    # Toward one target the fitness is the agreement with it.
    single = Scorer.build(SMALL, founders[:1], states).score(child.checkpoint)
    assert single.selection == child.score.selection_agreements[0]


def test_choices_look_only_at_selection_fitness(small_run):
    generation = small_run.generations[1]
    plan = plan_generation(SMALL, generation)
    assert plan == small_run.plans[1]
    # Reported fitness shuffled: the plan does not move.
    rescored = [
        dataclasses.replace(member, score=dataclasses.replace(member.score, report=1.0 - member.score.report))
        for member in generation.members
    ]
    assert plan_generation(SMALL, dataclasses.replace(generation, members=tuple(rescored))) == plan
    # Selection fitness reversed: the elite follows it.
    reversed_selection = [
        dataclasses.replace(member, score=dataclasses.replace(member.score, selection=-member.score.selection))
        for member in generation.members
    ]
    moved = plan_generation(SMALL, dataclasses.replace(generation, members=tuple(reversed_selection)))
    assert moved.elites != plan.elites
    assert small_run.best == small_run.generations[-1].ranked()[0]
    assert small_run.best.score.selection == max(member.score.selection for member in small_run.generations[-1].members)


def test_mdp_return_fitness_plays_the_seeded_linear_mdp(founders, states):
    config = dataclasses.replace(SMALL, fitness="mdp_return", mdp_episodes=16, mdp_max_steps=20, generations=1)
    run = run_evolution(founders, config, states)
    mdp = LinearMDP.from_seed(config.mdp_seed, 8, 4)
    for member in run.generations[1].members:
        forward = inference_forward(member.checkpoint)
        selection = greedy_returns(
            forward, mdp, initial_states(derive_seed(config.seed, "evolve/mdp_selection"), 16, 8), 20
        ).mean()
        report = greedy_returns(
            forward, mdp, initial_states(derive_seed(config.seed, "evolve/mdp_evaluation"), 16, 8), 20
        ).mean()
        assert member.score.selection == float(selection) and member.score.report == float(report)
    assert run.best.score.selection == max(member.score.selection for member in run.generations[1].members)
    assert len({member.score.selection for member in run.generations[1].members}) > 1
    # The agreements are still reported beside the return.
    assert all(0.0 <= agreement <= 1.0 for agreement in run.best.score.report_agreements)


def test_int8_founders_breed_float_children(founders, states):
    int8 = [quantize(founder, PTQConfig()).checkpoint for founder in founders]
    config = dataclasses.replace(SMALL, generations=1)
    run = run_evolution(int8, config, states)
    generation_0, generation_1 = run.generations
    assert [member.checkpoint.format for member in generation_0.members] == ["int8", "int8"]
    assert (
        generation_0.members[0].score.selection_agreements[0] == 1.0
    )  # scored against itself, through the int8 forward
    assert [member.checkpoint.format for member in generation_1.members] == ["int8", "float32", "float32", "float32"]
    assert generation_1.members[0].sha256 == sha256_hex(encode(int8[generation_1.members[0].slot]))
    float_run = run_evolution(founders, config, states)
    assert run.best.score.selection > float_run.generations[0].best.score.selection


def test_mutation_is_seeded_and_scaled_to_each_tensor(founders):
    founder = founders[0]
    assert mutate(founder, 0.0, 1).tensors.keys() == founder.tensors.keys()
    assert all(torch.equal(mutate(founder, 0.0, 1).tensors[key], founder.tensors[key]) for key in founder.tensors)
    first, again, other = mutate(founder, 0.05, 1), mutate(founder, 0.05, 1), mutate(founder, 0.05, 2)
    assert sha256_hex(encode(first)) == sha256_hex(encode(again)) != sha256_hex(encode(other))
    weight = founder.tensors["network.4.weight"]
    relative = (first.tensors["network.4.weight"] - weight).square().mean().sqrt() / weight.square().mean().sqrt()
    assert float(relative) == pytest.approx(0.05, rel=0.1)


def test_assembly_needs_every_planned_child_once(small_run):
    plan, previous = small_run.plans[0], small_run.generations[0]
    children = small_run.generations[1].members[len(plan.elites) :]
    with pytest.raises(ValueError, match=r"generation 1 needs children for slots \[1, 2, 3\], got \[1, 2\]"):
        assemble_generation(plan, previous, children[:2])
    with pytest.raises(ValueError, match="child g1-1 does not fit generation 1"):
        assemble_generation(plan, previous, [*children, children[0]])


def test_specs_members_and_the_report_are_json_round_trips(small_run):
    spec = small_run.plans[1].children[0]
    assert ChildSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    member = small_run.best
    assert Member.from_dict(json.loads(json.dumps(member.to_dict()))) == member
    report = json.loads(json.dumps(small_run.report({member.member_id: "ck_best"}), allow_nan=False))
    assert report["best"]["member_id"] == member.member_id and report["best_checkpoint_id"] == "ck_best"
    assert report["best"]["sha256"] == member.sha256 and report["best"]["fitness"]["report"] == member.score.report
    assert [row["generation"] for row in report["generations"]] == [0, 1, 2]
    assert [len(row["members"]) for row in report["generations"]] == [2, 4, 4]
    assert report["budget"] == {"children": 6, "finetune_epochs": 12}
    last = report["generations"][-1]
    assert last["best_fitness"]["selection"] == small_run.generations[-1].best.score.selection
    assert last["mean_fitness"]["report"] == pytest.approx(
        statistics.fmean(m.score.report for m in small_run.generations[-1].members)
    )
    assert [row["origin"] for row in last["members"]] == ["elite", "child", "child", "child"]
    assert all(row["parents"] and row["operators"]["crossover"]["mode"] for row in last["members"][1:])
    assert set(report["states"]) == {"train", "selection", "evaluation"}


def test_diversity_is_mean_pairwise_disagreement(founders, states, small_run):
    evaluation = torch.from_numpy(states.evaluation)
    with torch.inference_mode():
        actions = [inference_forward(founder)(evaluation).argmax(1) for founder in founders]
    assert diversity(founders, states.evaluation) == float((actions[0] != actions[1]).float().mean())
    assert diversity([founders[0], founders[0]], states.evaluation) == 0.0
    assert small_run.diversities[0] > small_run.diversities[-1]  # breeding toward both parents converges


def test_generation_ranking_breaks_ties_toward_the_earlier_slot(small_run):
    members = small_run.generations[1].members
    tied = tuple(
        dataclasses.replace(member, score=dataclasses.replace(member.score, selection=0.5)) for member in members
    )
    assert Generation(1, tied, ()).best.member_id == members[0].member_id
