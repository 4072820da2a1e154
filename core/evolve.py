"""Recombination across generations: a population bred toward the targets' behaviour.

Generation 0 is the founders as given. Every later generation keeps the
``elite`` best members of the one before unchanged and fills its other
``population_size`` slots with children. A child is one deterministic
function call (``run_child``)::

    two parents by tournament -> crossover (mode and alpha drawn per child)
    -> Gaussian mutation (sigma decays per generation) -> fine-tune toward
    the targets -> fitness on the selection states and on the evaluation states

Fan-out: ``plan_generation`` turns the previous generation into its elites
and a list of independent ``ChildSpec``s (parents by member id, crossover
recipe, mutation sigma, a seed derived from the evolution seed and the
child's slot), so a worker can run each child as its own job;
``assemble_generation`` puts elites and children together by slot. The next
plan, and so the winner, depend on the results and never on the order the
children finished in or on how many workers ran them. ``run_evolution`` runs
the whole loop in this process (tests, notebooks, benchmarks).

Fitness (``EvolveConfig.fitness``) is computed per member on two disjoint
sets and only the first is ever chosen on:

    min_agreement   min over targets of top-1 agreement (the search's primary
                    metric, min(agreement with A, with B), for two targets)
    mean_agreement  the mean over targets of top-1 agreement
    mdp_return      the mean return of greedy episodes on the seeded linear
                    MDP of ``core.mdp``; selection and evaluation episodes start
                    from different derived seeds

Tournaments, elites and the winner use the selection states (or episodes);
every reported fitness, agreement and the diversity is measured on the
evaluation states, which no choice looks at. The states are a search's
(``core.search.search_states`` of the same seed), so an evolution and a search
of one seed compare on the same draws.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from core import metrics
from core.artifacts import Checkpoint, encode, float_checkpoint, sha256_hex
from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    FITNESS_DEFINITIONS,
    FITNESSES,
    FLOAT_REGIMES,
    MAX_FINETUNE_EPOCHS,
    MAX_FOUNDERS,
    MAX_GENERATIONS,
    MAX_MDP_EPISODES,
    MAX_MDP_STEPS,
    MAX_MUTATION_SIGMA,
    MAX_POPULATION,
    MAX_TARGETS,
    MIN_FOUNDERS,
    EvolveConfig,
    Fitness,
)
from core.crossover import CrossoverConfig, CrossoverMode, crossover
from core.finetune import FinetuneConfig, finetune
from core.interrupt import Interrupt, checker
from core.mdp import LinearMDP, greedy_returns, initial_states
from core.quantize import dequantize, inference_forward
from core.search import UNUSED_ALPHA, SearchConfig, SearchStates, search_states
from core.states import derive_seed, validate_states
from core.threads import single_threaded
from core.training import EpochMetrics
from core.validate import EVAL_CHUNK_STATES


def evolve_states(
    config: EvolveConfig, input_dim: int, n_states: int = 1000, train_states: np.ndarray | torch.Tensor | None = None
) -> SearchStates:
    """Train, selection and evaluation states: the draws a search of the same seed uses (``search_states``)."""
    return search_states(SearchConfig(seed=config.seed), input_dim, n_states, train_states)


@dataclass(frozen=True)
class Score:
    """A member's fitness and its top-1 agreement with each target (in target order).

    ``selection`` is what tournaments, elites and the winner use; ``report``
    the same fitness on the evaluation states (or episodes), never chosen on.
    """

    selection: float
    report: float
    selection_agreements: tuple[float, ...]
    report_agreements: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "selection": self.selection,
            "report": self.report,
            "selection_agreements": list(self.selection_agreements),
            "report_agreements": list(self.report_agreements),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        return cls(
            data["selection"], data["report"], tuple(data["selection_agreements"]), tuple(data["report_agreements"])
        )


@dataclass(frozen=True)
class Scorer:
    """What fitness needs, computed once: the targets' Q-values on both state sets, and the MDP episodes."""

    fitness: Fitness
    selection_states: torch.Tensor
    evaluation_states: torch.Tensor
    selection_targets: tuple[torch.Tensor, ...]
    evaluation_targets: tuple[torch.Tensor, ...]
    mdp: LinearMDP | None
    selection_starts: np.ndarray | None
    evaluation_starts: np.ndarray | None
    mdp_max_steps: int

    @classmethod
    def build(cls, config: EvolveConfig, targets: Sequence[Checkpoint], states: SearchStates) -> Scorer:
        """The scorer of ``config.fitness`` toward ``targets`` on ``states.selection`` and ``states.evaluation``."""
        arch = targets[0].arch
        selection = torch.from_numpy(validate_states(np.asarray(states.selection), arch.input_dim))
        evaluation = torch.from_numpy(validate_states(np.asarray(states.evaluation), arch.input_dim))
        mdp = selection_starts = evaluation_starts = None
        if config.fitness == "mdp_return":
            mdp = LinearMDP.from_seed(config.mdp_seed, arch.input_dim, arch.output_dim)
            selection_starts = initial_states(
                derive_seed(config.seed, "evolve/mdp_selection"), config.mdp_episodes, arch.input_dim
            )
            evaluation_starts = initial_states(
                derive_seed(config.seed, "evolve/mdp_evaluation"), config.mdp_episodes, arch.input_dim
            )
        return cls(
            fitness=config.fitness,
            selection_states=selection,
            evaluation_states=evaluation,
            selection_targets=tuple(q_values(target, selection) for target in targets),
            evaluation_targets=tuple(q_values(target, evaluation) for target in targets),
            mdp=mdp,
            selection_starts=selection_starts,
            evaluation_starts=evaluation_starts,
            mdp_max_steps=config.mdp_max_steps,
        )

    def score(self, checkpoint: Checkpoint) -> Score:
        on_selection, on_evaluation = (
            q_values(checkpoint, self.selection_states),
            q_values(checkpoint, self.evaluation_states),
        )
        selection = tuple(metrics.action_agreement(target, on_selection) for target in self.selection_targets)
        report = tuple(metrics.action_agreement(target, on_evaluation) for target in self.evaluation_targets)
        if self.fitness == "min_agreement":
            return Score(min(selection), min(report), selection, report)
        if self.fitness == "mean_agreement":
            return Score(statistics.fmean(selection), statistics.fmean(report), selection, report)
        if self.mdp is None or self.selection_starts is None or self.evaluation_starts is None:
            raise ValueError("mdp_return fitness needs the scorer built with its MDP")
        forward = inference_forward(checkpoint)
        selection_return = float(greedy_returns(forward, self.mdp, self.selection_starts, self.mdp_max_steps).mean())
        report_return = float(greedy_returns(forward, self.mdp, self.evaluation_starts, self.mdp_max_steps).mean())
        return Score(selection_return, report_return, selection, report)


@dataclass(frozen=True)
class Member:
    """One network of the population, as made (a founder, or a child of generation ``generation``).

    ``member_id`` is ``g{generation}-{slot}`` and stays the member's id in
    every generation it is carried into as an elite. ``parents`` are member
    ids (empty for founders); ``operators`` how a child was made (crossover
    mode, alpha and drawn seed, mutation sigma, fine-tune settings, its
    seed), None for founders. ``finetune_epochs`` counts the epochs trained
    to make it. ``checkpoint`` is None in a member rebuilt from its dict.
    """

    member_id: str
    generation: int
    slot: int
    parents: tuple[str, ...]
    operators: dict[str, Any] | None
    score: Score
    sha256: str
    finetune_epochs: int
    checkpoint: Checkpoint | None = field(default=None, compare=False, repr=False)

    @property
    def network(self) -> Checkpoint:
        """The member's checkpoint, which only an in-process run holds (a replayed report has none)."""
        if self.checkpoint is None:
            raise ValueError(f"member {self.member_id} holds no checkpoint")
        return self.checkpoint

    def to_dict(self) -> dict:
        """JSON-ready: everything but the checkpoint's tensors."""
        return {
            "member_id": self.member_id,
            "generation": self.generation,
            "slot": self.slot,
            "parents": list(self.parents),
            "operators": self.operators,
            "score": self.score.to_dict(),
            "sha256": self.sha256,
            "finetune_epochs": self.finetune_epochs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Member:
        """Rebuild a member from ``to_dict()`` (a child run as a job elsewhere), without its checkpoint."""
        return cls(
            member_id=data["member_id"],
            generation=data["generation"],
            slot=data["slot"],
            parents=tuple(data["parents"]),
            operators=data["operators"],
            score=Score.from_dict(data["score"]),
            sha256=data["sha256"],
            finetune_epochs=data["finetune_epochs"],
        )


def member_id(generation: int, slot: int) -> str:
    return f"g{generation}-{slot}"


@dataclass(frozen=True)
class Generation:
    """A whole generation in slot order: the elites carried over (best first), then the children by slot."""

    index: int
    members: tuple[Member, ...]
    elites: tuple[str, ...]

    def ranked(self) -> list[Member]:
        """Members best first by selection fitness; ties keep slot order."""
        return [
            member
            for _, member in sorted(enumerate(self.members), key=lambda item: (-item[1].score.selection, item[0]))
        ]

    @property
    def best(self) -> Member:
        return self.ranked()[0]

    def origin_of(self, member: Member) -> str:
        """Whether ``member`` is a "founder", an "elite" (carried over unchanged) or a "child" (made in this
        generation).
        """
        if self.index == 0:
            return "founder"
        return "elite" if member.member_id in self.elites else "child"


@dataclass(frozen=True)
class ChildSpec:
    """One child to make: a self-contained unit of work (``run_child``), JSON round-trippable."""

    generation: int
    slot: int
    parent_a: str
    parent_b: str
    crossover: CrossoverConfig
    mutation_sigma: float
    seed: int

    @property
    def member_id(self) -> str:
        return member_id(self.generation, self.slot)

    @property
    def mutation_seed(self) -> int:
        """The seed of the child's mutation noise (``mutate``)."""
        return derive_seed(self.seed, "mutation")

    @property
    def crossover_seed(self) -> int | None:
        """The seed the crossover draws from: only ``random`` mode draws, the others record None."""
        return self.crossover.seed if self.crossover.mode == "random" else None

    def operators(self, finetune_config: FinetuneConfig) -> dict[str, Any]:
        return {
            "crossover": {
                "mode": self.crossover.mode,
                "alpha": None if self.crossover.mode == "layer" else self.crossover.alpha,
                "seed": self.crossover_seed,
            },
            "mutation": {"sigma": self.mutation_sigma, "seed": self.mutation_seed},
            "finetune": {
                "regime": finetune_config.regime,
                "epochs": finetune_config.epochs,
                "lr": finetune_config.lr,
                "teacher_weight_a": finetune_config.teacher_weight_a,
                "seed": finetune_config.seed,
            },
            "seed": self.seed,
        }

    def to_dict(self) -> dict:
        return {
            "generation": self.generation,
            "slot": self.slot,
            "member_id": self.member_id,
            "parent_a": self.parent_a,
            "parent_b": self.parent_b,
            "crossover": dataclasses.asdict(self.crossover),
            "mutation_sigma": self.mutation_sigma,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChildSpec:
        return cls(
            generation=data["generation"],
            slot=data["slot"],
            parent_a=data["parent_a"],
            parent_b=data["parent_b"],
            crossover=CrossoverConfig(**data["crossover"]),
            mutation_sigma=data["mutation_sigma"],
            seed=data["seed"],
        )


@dataclass(frozen=True)
class GenerationPlan:
    """What generation ``index`` is made of: elites carried over (member ids, best first) and the children to make."""

    index: int
    elites: tuple[str, ...]
    children: tuple[ChildSpec, ...]


def plan_generation(config: EvolveConfig, previous: Generation) -> GenerationPlan:
    """Elites and child specs of the generation after ``previous``, from its selection fitness alone.

    Every draw (tournaments, crossover mode and alpha) comes from a generator
    seeded by ``config.seed`` and the generation index, consumed in slot
    order; each child's own seed is derived from ``config.seed``, the
    generation and its slot. Equal fitness breaks toward the earlier slot.
    """
    index = previous.index + 1
    elites = tuple(member.member_id for member in previous.ranked()[: config.elite])
    fitness = [member.score.selection for member in previous.members]
    rng = np.random.default_rng(derive_seed(config.seed, f"evolve/plan/{index}"))
    sigma = config.mutation_sigma_at(index)
    children = []
    for slot in range(len(elites), config.population_size):
        parent_a = _tournament(rng, fitness, config.tournament_size, exclude=None)
        parent_b = _tournament(rng, fitness, config.tournament_size, exclude=parent_a)
        # Names were checked against CROSSOVER_MODES when the config was built.
        mode = cast(CrossoverMode, config.crossover_modes[int(rng.integers(len(config.crossover_modes)))])
        alpha = config.alpha_values[int(rng.integers(len(config.alpha_values)))]
        seed = derive_seed(config.seed, f"evolve/child/{index}/{slot}")
        recipe = CrossoverConfig(mode=mode, alpha=UNUSED_ALPHA if mode == "layer" else alpha, seed=seed)
        children.append(
            ChildSpec(
                index,
                slot,
                previous.members[parent_a].member_id,
                previous.members[parent_b].member_id,
                recipe,
                sigma,
                seed,
            )
        )
    return GenerationPlan(index, elites, tuple(children))


def _tournament(rng: np.random.Generator, fitness: Sequence[float], size: int, exclude: int | None) -> int:
    """The position of the fittest of ``size`` members drawn without replacement (``exclude`` never drawn)."""
    candidates = [position for position in range(len(fitness)) if position != exclude]
    drawn = rng.choice(len(candidates), size=min(size, len(candidates)), replace=False)
    return min((candidates[int(index)] for index in drawn), key=lambda position: (-fitness[position], position))


def mutate(checkpoint: Checkpoint, sigma: float, seed: int) -> Checkpoint:
    """A float32 copy of ``checkpoint`` with ``N(0, (sigma * rms(t))**2)`` noise added to every tensor ``t``.

    Tensors are visited in sorted key order and the noise drawn from a
    generator seeded by ``seed``, so a seed fixes the result. ``sigma`` 0
    returns the float weights unchanged. Int8 checkpoints are dequantized.
    """
    params = dequantize(checkpoint)
    if sigma == 0:
        return float_checkpoint(
            params, arch=checkpoint.arch, metadata=checkpoint.metadata, source_format=checkpoint.source_format
        )
    generator = torch.Generator().manual_seed(seed)
    mutated = {}
    for key in sorted(params):
        tensor = params[key].to(torch.float32)
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        mutated[key] = tensor + noise * (sigma * tensor.square().mean().sqrt())
    return float_checkpoint(
        mutated, arch=checkpoint.arch, metadata=checkpoint.metadata, source_format=checkpoint.source_format
    )


def founders_generation(
    founders: Sequence[Checkpoint], targets: Sequence[Checkpoint], states: SearchStates, config: EvolveConfig
) -> Generation:
    """Generation 0: the founders as given (float or int8), scored."""
    check_population(founders, targets)
    scorer = Scorer.build(config, targets, states)
    members = tuple(
        Member(member_id(0, slot), 0, slot, (), None, scorer.score(founder), sha256_hex(encode(founder)), 0, founder)
        for slot, founder in enumerate(founders)
    )
    return Generation(0, members, ())


@single_threaded
def run_child(
    spec: ChildSpec,
    parent_a: Checkpoint,
    parent_b: Checkpoint,
    targets: Sequence[Checkpoint],
    states: SearchStates,
    config: EvolveConfig,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    interrupt: Interrupt | None = None,
) -> Member:
    """Make and score one child: crossover, mutation, fine-tune on ``states.train`` toward ``targets``, fitness.

    ``parent_a`` and ``parent_b`` are the checkpoints of ``spec.parent_a`` and
    ``spec.parent_b`` (float or int8). ``aligned`` crossover matches units on
    the training states. ``on_epoch`` (progress) and ``interrupt``
    (``core.interrupt``) reach the crossover and the fine-tune loop. Same inputs give a bit-identical child (and
    sha256) at any thread setting, in any process.
    """
    train = validate_states(np.asarray(states.train), parent_a.arch.input_dim)
    crossed = crossover(
        parent_a, parent_b, spec.crossover, states=train if spec.crossover.needs_states else None, interrupt=interrupt
    ).child
    mutated = mutate(crossed, spec.mutation_sigma, spec.mutation_seed)
    finetune_config = config.finetune_config(len(targets), derive_seed(spec.seed, "finetune"))
    tuned = finetune(
        mutated,
        targets[0],
        train,
        finetune_config,
        reference_b=targets[1] if len(targets) > 1 else None,
        on_epoch=on_epoch,
        interrupt=interrupt,
    )
    operators = spec.operators(finetune_config)
    lineage = {
        "stage": "evolve_child",
        "member_id": spec.member_id,
        "generation": spec.generation,
        "parents": [spec.parent_a, spec.parent_b],
        "operators": operators,
    }
    child = dataclasses.replace(tuned.child, metadata={**tuned.child.metadata, **lineage})
    return Member(
        member_id=spec.member_id,
        generation=spec.generation,
        slot=spec.slot,
        parents=(spec.parent_a, spec.parent_b),
        operators=operators,
        score=Scorer.build(config, targets, states).score(child),
        sha256=sha256_hex(encode(child)),
        finetune_epochs=len(tuned.history),
        checkpoint=child,
    )


def assemble_generation(plan: GenerationPlan, previous: Generation, children: Iterable[Member]) -> Generation:
    """Generation ``plan.index``: ``plan.elites`` from ``previous`` (unchanged), then the children by slot.

    ``children`` may come in any order; each planned slot needs exactly its member.
    """
    carried = {member.member_id: member for member in previous.members}
    by_slot: dict[int, Member] = {}
    for child in children:
        if child.generation != plan.index or child.slot in by_slot:
            raise ValueError(
                f"child {child.member_id} does not fit generation {plan.index} (wrong generation or a slot given twice)"
            )
        by_slot[child.slot] = child
    expected = {spec.slot for spec in plan.children}
    if set(by_slot) != expected:
        raise ValueError(f"generation {plan.index} needs children for slots {sorted(expected)}, got {sorted(by_slot)}")
    members = [carried[identifier] for identifier in plan.elites] + [by_slot[spec.slot] for spec in plan.children]
    return Generation(plan.index, tuple(members), plan.elites)


def diversity(checkpoints: Sequence[Checkpoint], states: np.ndarray | torch.Tensor) -> float:
    """Mean over member pairs of the share of ``states`` on which their greedy actions differ (0 with one member).

    0 means every member acts alike; with ``n_actions`` actions chosen at
    random it would be ``1 - 1 / n_actions``.
    """
    state_tensor = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    actions = [q_values(checkpoint, state_tensor).argmax(dim=1) for checkpoint in checkpoints]
    pairs = list(itertools.combinations(actions, 2))
    if not pairs:
        return 0.0
    return statistics.fmean(float((first != second).float().mean()) for first, second in pairs)


def generation_summary(generation: Generation, diversity_value: float) -> dict:
    """What a running evolution shows: a generation's best and mean fitness (selection and report), its diversity."""
    best = generation.best
    return {
        "generation": generation.index,
        "best_member": best.member_id,
        "best_fitness": {"selection": best.score.selection, "report": best.score.report},
        "mean_fitness": {
            "selection": statistics.fmean(member.score.selection for member in generation.members),
            "report": statistics.fmean(member.score.report for member in generation.members),
        },
        "diversity": diversity_value,
        "n_members": len(generation.members),
        "n_children": sum(generation.origin_of(member) == "child" for member in generation.members),
    }


def describe_states(config: EvolveConfig, states: SearchStates) -> dict[str, str]:
    """Which states (and episodes) served which purpose."""
    described = {
        "train": f"{len(states.train)} states: fine-tuning every child (and unit matching for aligned crossover)",
        "selection": f"{len(states.selection)} states: "
        + (
            "fitness for tournaments, elites and the winner"
            if config.fitness != "mdp_return"
            else "selection agreements, reported; no choice looks at them"
        ),
        "evaluation": f"{len(states.evaluation)} states: every reported agreement"
        + (" and fitness" if config.fitness != "mdp_return" else "")
        + " and the diversity; no choice looks at them",
    }
    if config.fitness == "mdp_return":
        episodes = (
            f"{config.mdp_episodes} greedy episodes of {config.mdp_max_steps} steps "
            f"on the linear MDP of seed {config.mdp_seed}"
        )
        described["selection_episodes"] = (
            f"{episodes}, starts derived from the evolution seed: fitness for tournaments, elites and the winner"
        )
        described["evaluation_episodes"] = (
            f"{episodes}, other starts derived from the evolution seed: every reported fitness; no choice looks at them"
        )
    return described


def evolve_report(
    config: EvolveConfig,
    generations: Sequence[Generation],
    diversities: Sequence[float],
    states: SearchStates,
    checkpoint_ids: Mapping[str, str] | None = None,
) -> dict:
    """The JSON-ready body of an evolution's report.

    Per generation: the summary (best and mean fitness, diversity, best
    member) and every member with its origin, parents, operators and
    fitness; ``best`` is the final generation's best by selection fitness
    (elitism makes it the best ever chosen on), with its id, checkpoint id
    (from ``checkpoint_ids`` by member id, when stored) and sha256.
    """
    ids = dict(checkpoint_ids or {})
    final, founders = generations[-1], generations[0]
    best = final.best
    rows = []
    for generation, diversity_value in zip(generations, diversities, strict=True):
        summary = generation_summary(generation, diversity_value)
        summary["best_checkpoint_id"] = ids.get(summary["best_member"])
        summary["members"] = [
            {**member.to_dict(), "origin": generation.origin_of(member), "checkpoint_id": ids.get(member.member_id)}
            for member in generation.members
        ]
        rows.append(summary)
    children = [
        member for generation in generations for member in generation.members if generation.origin_of(member) == "child"
    ]
    return {
        "fitness": {"name": config.fitness, "definition": FITNESS_DEFINITIONS[config.fitness]},
        "states": describe_states(config, states),
        "generations": rows,
        "best": {
            "member_id": best.member_id,
            "checkpoint_id": ids.get(best.member_id),
            "sha256": best.sha256,
            "generation": best.generation,
            "fitness": {"selection": best.score.selection, "report": best.score.report},
            "agreements": {
                "selection": list(best.score.selection_agreements),
                "report": list(best.score.report_agreements),
            },
        },
        "best_checkpoint_id": ids.get(best.member_id),
        "founders_best": {
            "member_id": founders.best.member_id,
            "fitness": {"selection": founders.best.score.selection, "report": founders.best.score.report},
        },
        "budget": {"children": len(children), "finetune_epochs": sum(member.finetune_epochs for member in children)},
        "config": dataclasses.asdict(config),
    }


@dataclass(frozen=True)
class EvolutionRun:
    """A whole evolution run in one process: every generation (0 = founders), its plan and diversity."""

    config: EvolveConfig
    states: SearchStates
    generations: list[Generation]
    plans: list[GenerationPlan]
    diversities: list[float]
    elapsed_s: float

    @property
    def best(self) -> Member:
        return self.generations[-1].best

    @property
    def finetune_epochs(self) -> int:
        """Fine-tune epochs trained over the whole run (elites carried over cost none)."""
        made = (
            member
            for generation in self.generations
            for member in generation.members
            if generation.origin_of(member) == "child"
        )
        return sum(member.finetune_epochs for member in made)

    def report(self, checkpoint_ids: Mapping[str, str] | None = None) -> dict:
        return evolve_report(self.config, self.generations, self.diversities, self.states, checkpoint_ids)


ChildMap = Callable[[Callable[[ChildSpec], Member], Sequence[ChildSpec]], Iterable[Member]]


def run_evolution(
    founders: Sequence[Checkpoint],
    config: EvolveConfig,
    states: SearchStates,
    targets: Sequence[Checkpoint] | None = None,
    child_map: ChildMap = map,
    interrupt: Interrupt | None = None,
) -> EvolutionRun:
    """Evolve ``founders`` toward ``targets`` (default: the founders) for ``config.generations`` generations.

    ``child_map(make_child, specs)`` runs one generation's children; any
    order of results gives the same run (``assemble_generation`` orders them
    by slot). The worker runs the same plan with one job per child.
    ``interrupt`` (``core.interrupt``) runs before each generation and inside every child.
    """
    check = checker(interrupt)
    started = time.perf_counter()
    targets = tuple(founders) if targets is None else tuple(targets)
    generation = founders_generation(founders, targets, states, config)
    checkpoints = {member.member_id: member.network for member in generation.members}
    generations, plans = [generation], []
    diversities = [diversity([member.network for member in generation.members], states.evaluation)]
    for _ in range(config.generations):
        check()
        plan = plan_generation(config, generation)

        def make_child(spec: ChildSpec) -> Member:
            return run_child(
                spec, checkpoints[spec.parent_a], checkpoints[spec.parent_b], targets, states, config, interrupt=check
            )

        generation = assemble_generation(plan, generation, child_map(make_child, plan.children))
        checkpoints.update({member.member_id: member.network for member in generation.members})
        generations.append(generation)
        plans.append(plan)
        diversities.append(
            diversity([checkpoints[member.member_id] for member in generation.members], states.evaluation)
        )
    return EvolutionRun(config, states, generations, plans, diversities, time.perf_counter() - started)


def check_population(founders: Sequence[Checkpoint], targets: Sequence[Checkpoint]) -> None:
    """Raise ``ValueError`` unless there are 2-64 founders of one architecture and 1-2 targets they can be tuned toward.

    Targets need only the founders' input and output sizes (a founder can be
    tuned toward a wider teacher).
    """
    if not MIN_FOUNDERS <= len(founders) <= MAX_FOUNDERS:
        raise ValueError(f"founders must hold {MIN_FOUNDERS} to {MAX_FOUNDERS} checkpoints, got {len(founders)}")
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise ValueError(
            f"targets must hold 1 or {MAX_TARGETS} checkpoints (the fine-tune loss takes one or two), got "
            f"{len(targets)}"
        )
    arch = founders[0].arch
    for position, founder in enumerate(founders):
        if not founder.arch.same_function_family(arch):
            raise ValueError(
                f"founders[{position}] is {founder.arch.describe()} but founders[0] is {arch.describe()}: "
                f"{founder.arch.difference(arch)}"
            )
    for position, target in enumerate(targets):
        if (target.arch.input_dim, target.arch.output_dim) != (arch.input_dim, arch.output_dim):
            raise ValueError(
                f"targets[{position}] is {target.arch.describe()} but the founders are {arch.describe()}: input/output "
                "dims differ"
            )


def q_values(checkpoint: Checkpoint, states: torch.Tensor) -> torch.Tensor:
    """``(n_states, output_dim)`` Q-values in chunks, the validators' evaluation path (so agreements match theirs bit
    for bit).
    """
    forward = inference_forward(checkpoint)
    with torch.inference_mode():
        return torch.cat([forward(chunk) for chunk in states.split(EVAL_CHUNK_STATES)])
