"""One thin task per job kind, each in its own module with a handler registered by ``@handles(kind)``.

Registering by name (``recomb.<kind>``) lets the API publish without
importing any of this. Importing this package refuses to start a worker
if a kind of ``app.contracts.job_kinds.JOB_KINDS`` has no handler.
"""

from __future__ import annotations

from app.contracts.job_kinds import JOB_KINDS
from app.service.queue import get_celery, task_name
from worker.runner import Handler, registered_handlers, run_job
from worker.tasks import (  # noqa: F401  (importing a task module registers its handler)
    crossover_job,
    distill_job,
    evolve_child_job,
    evolve_job,
    finetune_job,
    pipeline_job,
    ptq_job,
    qat_job,
    quantize_job,
    search_job,
    search_trial_job,
    validate_distillation_job,
    validate_quantized_job,
    validate_recombination_job,
)

HANDLERS = registered_handlers()
_unhandled = sorted(set(JOB_KINDS) - set(HANDLERS))
if _unhandled:
    raise RuntimeError(f"job kinds without a handler: {', '.join(_unhandled)}; register one with @handles(kind)")


def _register(kind: str, handler: Handler) -> None:
    @get_celery().task(name=task_name(kind))
    def task(job_id: str) -> None:
        run_job(job_id, handler)


for _kind, _handler in HANDLERS.items():
    _register(_kind, _handler)
