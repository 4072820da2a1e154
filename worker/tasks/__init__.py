"""One thin task per job kind, each in its own module with a ``handle(context)``.

Registering by name (``recomb.<kind>``) lets the API publish without
importing any of this.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.queue import get_celery, task_name
from worker.runner import JobContext, run_job
from worker.tasks import (
    crossover,
    distill,
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

HANDLERS: dict[str, Callable[[JobContext], None]] = {
    "distill": distill.handle,
    "validate-distillation": validate_distillation.handle,
    "ptq": ptq.handle,
    "qat": qat.handle,
    "quantize": quantize.handle,
    "validate-quantized": validate_quantized.handle,
    "crossover": crossover.handle,
    "finetune": finetune.handle,
    "validate-recombination": validate_recombination.handle,
    "pipeline": pipeline.handle,
    "search": search.handle,
    "search-trial": search_trial.handle,
}


def _register(kind: str, handler: Callable[[JobContext], None]) -> None:
    @get_celery().task(name=task_name(kind))
    def task(job_id: str) -> None:
        run_job(job_id, handler)


for _kind, _handler in HANDLERS.items():
    _register(_kind, _handler)
