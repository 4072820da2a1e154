"""``evolve``: breeds generation after generation, each child an ``evolve-child`` job on any worker.

Runs once per wake-up and replays the evolution from its children's reports:
generation 0 is the founders, every later one is planned from the one before
(``core.evolve.plan_generation``) and waits until all of its children are
done. A restart resumes from the last finished generation: finished children
are read back, never run again. The job's summary shows every finished
generation (best, mean, diversity) while the next one runs.
"""

from __future__ import annotations

from app.contracts.job_kinds import evolve_target_ids
from app.service.tables import JobStatus
from core.artifacts import Checkpoint
from core.evolve import (
    Member,
    assemble_generation,
    diversity,
    evolve_report,
    founders_generation,
    plan_generation,
)
from worker.evolution import child_params, evolution_states, publish_progress
from worker.runner import JobContext, handles

# While a generation runs, its summary and progress refresh at most this often; it always wakes when one ends.
SUMMARY_INTERVAL_S = 5.0


@handles("evolve")
def handle(context: JobContext) -> None:
    params = context.params
    config = params.config()
    target_ids = evolve_target_ids(params)
    founders = [context.checkpoint(founder_id) for founder_id in params.population]
    targets = [context.checkpoint(target_id) for target_id in target_ids]
    states = evolution_states(context, config, founders[0].arch.input_dim)
    generation = founders_generation(founders, targets, states, config)
    checkpoint_ids = {member.member_id: ref for member, ref in zip(generation.members, params.population, strict=True)}
    networks: dict[str, Checkpoint] = dict(zip(checkpoint_ids, founders, strict=True))
    generations, diversities = [generation], [diversity(founders, states.evaluation)]
    children = context.children()
    for index in range(1, config.generations + 1):
        context.interrupt()
        plan = plan_generation(config, generation)
        made, new, running = [], [], 0
        for spec in plan.children:
            key = f"g{index}/{spec.slot}"
            child = children.get(key)
            if child is None:
                new.append((key, "evolve-child", child_params(params, spec.to_dict(), checkpoint_ids, target_ids)))
            elif not child.finished:
                running += 1
            elif child.status != JobStatus.succeeded:
                raise RuntimeError(f"child {key} of generation {index} {child.status.value}: {child.error}")
            else:
                made.append(Member.from_dict(child.result["member"]))
                checkpoint_ids[spec.member_id] = child.result["child_id"]
        if new or running:
            context.spawn(new)
            publish_progress(context, config, generations, diversities, len(made))
            context.wait_for_children(children, wake_interval_s=SUMMARY_INTERVAL_S)
        generation = assemble_generation(plan, generation, made)
        networks.update({m.member_id: context.checkpoint(checkpoint_ids[m.member_id]) for m in made})
        generations.append(generation)
        diversities.append(diversity([networks[m.member_id] for m in generation.members], states.evaluation))
    report = evolve_report(config, generations, diversities, states, checkpoint_ids)
    # Held-out verdict: the winner (chosen on selection states) keeps at least what the best founder had.
    passed = report["best"]["fitness"]["report"] >= report["founders_best"]["fitness"]["report"]
    context.set_report({"passed": passed, "target_ids": target_ids, **report})
