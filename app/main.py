"""The FastAPI application."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import anyio  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.openapi.utils import get_openapi  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from sqlalchemy.exc import DataError, OperationalError  # noqa: E402
from sqlalchemy.exc import TimeoutError as PoolTimeout  # noqa: E402

from app.api.admission import QueueCounts  # noqa: E402
from app.api.middleware import (  # noqa: E402
    DATABASE_SLOT_WAIT_S,
    SUBMIT_SLOT_WAIT_S,
    UPLOAD_SLOT_WAIT_S,
    ApiKeyGate,
    BodySizeLimit,
    Slots,
    is_submission,
    is_upload,
    uses_database,
)
from app.api.routes import (  # noqa: E402
    admin,
    audit_log,
    checkpoints,
    dashboard,
    docs,
    health,
    job_events,
    jobs,
    models,
    monitoring,
    reports,
    state_buffers,
    webhooks,
)
from app.api.schemas import ErrorDetail  # noqa: E402
from app.contracts.job_fields import add_operating_caps  # noqa: E402
from app.service.db import concurrent_sessions  # noqa: E402
from app.service.queue import make_celery  # noqa: E402
from app.settings import Settings, get_settings  # noqa: E402

DESCRIPTION = """Distil, quantize, recombine and validate small PyTorch Q-networks.

Upload or synthesise parent networks, queue jobs (`POST /jobs/{kind}`), follow
them (`GET /jobs/{id}`) and read their versioned reports (`GET /reports/{id}`).
Every checkpoint records its lineage.
"""

# Documented on every resource, so the schema names each error a client can
# get; 422 replaces FastAPI's default, whose ``detail`` is only ever a list.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status_code: {"model": ErrorDetail, "description": description}
    for status_code, description in (
        (400, "a body that cannot be parsed (not JSON, broken multipart)"),
        (401, "missing or invalid API key (only when RECOMB_API_KEYS is set)"),
        (403, "the API key's role does not allow this request (read < submit < admin)"),
        (404, "an id in the path or body names nothing"),
        (413, "a body larger than RECOMB_MAX_BODY_BYTES (uploads: RECOMB_MAX_UPLOAD_BYTES)"),
        (422, "a malformed request (a list of field errors) or a value the service cannot use (a message)"),
        (503, "the database is unreachable or busy; retry after Retry-After seconds"),
    )
}
DATABASE_RETRY_AFTER_S = 5
# Threads that close request sessions (returning their connections): as many as the pool holds, so none ever waits.
SESSION_CLOSERS = 20
# A validation error names each bad field; the value it got is repeated only when short, so a huge body is never echoed.
ECHOED_INPUT_MAX_CHARS = 80
ERROR_MESSAGE_MAX_CHARS = 300


async def database_unreachable(_request: Request, _error: Exception) -> JSONResponse:
    """A database outage is the service's, not the client's: 503 and a hint to retry, not a 500."""
    return JSONResponse(
        {"detail": "database unreachable; retry later"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def database_busy(_request: Request, _error: Exception) -> JSONResponse:
    """Every pooled connection stayed taken: the service is overloaded, which is a 503 to retry, not a 500."""
    return JSONResponse(
        {"detail": "database busy; retry later"}, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    )


async def invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 list of field errors, without echoing large inputs back."""
    if not isinstance(error, RequestValidationError):  # registered for that type only
        raise error
    return JSONResponse({"detail": [_compact(item) for item in error.errors()]}, status_code=422)


def _compact(item: dict) -> dict:
    compact = {
        "type": item.get("type"),
        "loc": list(item.get("loc", ())),
        "msg": str(item.get("msg", ""))[:ERROR_MESSAGE_MAX_CHARS],
    }
    value = item.get("input")
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= ECHOED_INPUT_MAX_CHARS):
        compact["input"] = value
    return compact


async def value_not_storable(_request: Request, error: Exception) -> JSONResponse:
    """A request value the database refuses (PostgreSQL takes no NUL byte in text) is bad input: 422, not a 500."""
    if not isinstance(error, DataError):  # registered for that type only
        raise error
    reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
    return JSONResponse({"detail": f"a value in the request cannot be stored: {reason}"}, status_code=422)


def operation_id(route: APIRoute) -> str:
    """A route's operation id is its handler's name (``create_distill_job``, ``get_report``), unique by test."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.session_close_limiter = anyio.CapacityLimiter(SESSION_CLOSERS)
        yield

    # pyproject.toml holds the version
    app = FastAPI(
        title="recomb",
        version=version("recomb"),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by the docs router, from local files
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )

    def openapi() -> dict[str, Any]:
        """The schema, with each job field's operating cap from these settings (``x-operating-cap``)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            add_operating_caps(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.state.queue_counts = QueueCounts()
    # Outermost last: the key is checked first, then slots are taken (the quickest refusals first), then the body is
    # counted.
    app.add_middleware(
        BodySizeLimit, max_upload_bytes=settings.max_upload_bytes, max_body_bytes=settings.max_body_bytes
    )
    app.add_middleware(
        Slots,
        matches=uses_database,
        slots=concurrent_sessions(settings.resolved_database_url),
        wait_s=DATABASE_SLOT_WAIT_S,
        what="requests using the database",
        setting="one per pooled connection; one on SQLite",
        busy_status=503,
    )
    app.add_middleware(
        Slots,
        matches=is_upload,
        slots=settings.upload_concurrency,
        wait_s=UPLOAD_SLOT_WAIT_S,
        what="uploads",
        setting="RECOMB_UPLOAD_CONCURRENCY",
    )
    app.add_middleware(
        Slots,
        matches=is_submission,
        slots=settings.submit_concurrency,
        wait_s=SUBMIT_SLOT_WAIT_S,
        what="job submissions",
        setting="RECOMB_SUBMIT_CONCURRENCY",
    )
    app.add_middleware(ApiKeyGate, keys=settings.api_key_roles, public_docs=settings.public_docs)
    app.add_exception_handler(OperationalError, database_unreachable)
    app.add_exception_handler(PoolTimeout, database_busy)
    app.add_exception_handler(DataError, value_not_storable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(job_events.router)  # before the jobs router, so /jobs/{id}/events is matched here
    app.include_router(monitoring.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    app.include_router(health.router)
    for module in (checkpoints, state_buffers, jobs, reports, models, webhooks, admin, audit_log):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app
