"""What the evolve job and its ``evolve-child`` jobs share: the states, each child's params, the progress shown."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.evolve import EvolveConfig, Generation, evolve_states, generation_summary
from core.search import SearchStates
from worker.runner import JobContext


def evolution_states(context: JobContext, config: EvolveConfig, input_dim: int) -> SearchStates:
    """Train, selection and evaluation states; the same in the evolve job and in every child."""
    params = context.params
    given = context.states(params.states, input_dim) if params.states is not None else None
    states = evolve_states(config, input_dim, params.n_states, given)
    if params.eval_states is not None:
        states = dataclasses.replace(states, evaluation=context.states(params.eval_states, input_dim).numpy())
    return states


def child_params(params: Any, spec: dict, checkpoint_ids: dict[str, str], target_ids: list[str]) -> dict:
    """An ``evolve-child`` job's params: the parents' checkpoint ids, the evolution's config and states."""
    states = {
        field: given.model_dump(exclude_none=True)
        for field in ("states", "eval_states")
        if (given := getattr(params, field)) is not None
    }
    return {
        "parent_a_id": checkpoint_ids[spec["parent_a"]],
        "parent_b_id": checkpoint_ids[spec["parent_b"]],
        "target_ids": target_ids,
        "evolve": dataclasses.asdict(params.config()),
        "child": spec,
        "n_states": params.n_states,
        **states,
    }


def publish_progress(
    context: JobContext, config: EvolveConfig, generations: list[Generation], diversities: list[float], done: int
) -> None:
    finished = [generation_summary(g, d) for g, d in zip(generations, diversities, strict=True)]
    running = len(generations)
    per_generation = config.population_size - config.elite
    context.set_summary({"generation": running, "children_done": done, "generations": finished})
    context.progress(
        min(0.99, ((running - 1) * per_generation + done) / (config.generations * per_generation)),
        f"generation {running}/{config.generations}: {done}/{per_generation} children done",
    )
