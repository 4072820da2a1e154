"""The worker process: the shared Celery app with every job kind's task registered.

Run with ``recomb worker`` (a solo pool: one job at a time, one torch
thread, warm imports), as many processes as there are cores to use.
"""

from __future__ import annotations

import logging
import os
import threading

# Before torch loads: one intra-op thread per worker process; several workers
# on one machine would otherwise oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402
from celery.signals import worker_ready, worker_shutdown  # noqa: E402

from app.logs import bind_job_id_to_celery_tasks  # noqa: E402
from app.service.queue import get_celery  # noqa: E402
from app.settings import get_settings  # noqa: E402
from worker.reconciler import start_reconciler  # noqa: E402
from worker.webhook_sender import start_webhook_sender  # noqa: E402

torch.set_num_threads(1)
celery = get_celery()
bind_job_id_to_celery_tasks()
_stop_background = threading.Event()

import worker.tasks  # noqa: E402,F401  (registers every job kind on ``celery``)


@worker_ready.connect
def _start_background(**_: object) -> None:
    start_reconciler(get_settings(), _stop_background)
    start_webhook_sender(get_settings(), _stop_background)
    logging.getLogger("recomb.worker").info(
        "worker ready: torch %s, %d thread(s)", torch.__version__, torch.get_num_threads()
    )


@worker_shutdown.connect
def _stop_background_threads(**_: object) -> None:
    _stop_background.set()
