"""The FastAPI application."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from app.api.routes import checkpoints, health, jobs, reports, states  # noqa: E402
from app.api.routes import events, metrics, ui  # noqa: E402
from app.api.uploads import UploadSizeLimit  # noqa: E402
from app.core.config import Settings, get_settings  # noqa: E402
from app.core.queue import make_celery  # noqa: E402

DESCRIPTION = """Distil, quantize, recombine and validate small PyTorch Q-networks.

Upload or synthesise parent networks, queue jobs (`POST /jobs/{kind}`), follow
them (`GET /jobs/{id}`) and read their versioned reports (`GET /reports/{id}`).
Every checkpoint records its lineage.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    torch.set_num_threads(1)  # uploads are parsed in-process; keep torch off the other cores
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="recomb", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.add_middleware(UploadSizeLimit, max_bytes=settings.max_upload_bytes)
    app.include_router(events.router)  # before the jobs router, so /jobs/{id}/events is matched here
    app.include_router(metrics.router)
    app.include_router(ui.router)
    for module in (health, checkpoints, states, jobs, reports):
        app.include_router(module.router)
    return app
