"""The FastAPI application."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from sqlalchemy.exc import DataError, OperationalError  # noqa: E402

from app.api.routes import checkpoints, health, jobs, reports, states  # noqa: E402
from app.api.routes import events, metrics, ui  # noqa: E402
from app.api.uploads import UploadSizeLimit  # noqa: E402
from app.core.config import Settings, get_settings  # noqa: E402
from app.core.queue import make_celery  # noqa: E402
from app.schemas import ErrorDetail  # noqa: E402

DESCRIPTION = """Distil, quantize, recombine and validate small PyTorch Q-networks.

Upload or synthesise parent networks, queue jobs (`POST /jobs/{kind}`), follow
them (`GET /jobs/{id}`) and read their versioned reports (`GET /reports/{id}`).
Every checkpoint records its lineage.
"""

# Documented on every resource, so the schema names each error a client can
# get; 422 replaces FastAPI's default, whose ``detail`` is only ever a list.
ERROR_RESPONSES = {
    status_code: {"model": ErrorDetail, "description": description}
    for status_code, description in (
        (400, "a body that cannot be parsed (not JSON, broken multipart)"),
        (401, "missing or invalid API key (only when RECOMB_API_KEYS is set)"),
        (404, "an id in the path or body names nothing"),
        (422, "a malformed request (a list of field errors) or a value the service cannot use (a message)"),
        (503, "the database is unreachable; retry later"),
    )
}
DATABASE_RETRY_AFTER_S = 5


async def database_unreachable(_request: Request, _error: OperationalError) -> JSONResponse:
    """A database outage is the service's, not the client's: 503 and a hint to retry, not a 500."""
    return JSONResponse({"detail": "database unreachable; retry later"}, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})


async def value_not_storable(_request: Request, error: DataError) -> JSONResponse:
    """A request value the database refuses (PostgreSQL takes no NUL byte in text) is bad input: 422, not a 500."""
    reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
    return JSONResponse({"detail": f"a value in the request cannot be stored: {reason}"}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    torch.set_num_threads(1)  # uploads are parsed in-process; keep torch off the other cores
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="recomb", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.add_middleware(UploadSizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_exception_handler(OperationalError, database_unreachable)
    app.add_exception_handler(DataError, value_not_storable)
    app.include_router(events.router)  # before the jobs router, so /jobs/{id}/events is matched here
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.include_router(health.router)
    for module in (checkpoints, states, jobs, reports):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app
