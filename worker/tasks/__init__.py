"""One thin task per job kind, each in its own module with a handler registered by ``@handles(kind)``.

Registering by name (``recomb.<kind>``) lets the API publish without
importing any of this. Importing this package refuses to start a worker
if a kind of ``app.jobs.JOB_KINDS`` has no handler.
"""

from __future__ import annotations

from app.core.queue import get_celery, task_name
from app.jobs import JOB_KINDS
from worker.runner import Handler, registered_handlers, run_job
from worker.tasks import (  # noqa: F401  (importing a task module registers its handler)
    crossover,
    distill,
    evolve,
    evolve_child,
    finetune,
    pipeline,
    ptq,
    qat,
    quantize,
    search,
    search_trial,
    validate_distillation,
    validate_quantized,
    validate_recombination,
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
