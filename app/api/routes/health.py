"""Liveness and readiness (database and broker reachable); never behind auth."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import text

from app.api.deps import SettingsDep
from app.api.schemas import Health
from app.service.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Answered on the event loop, needing no thread, connection or lock: busy workers and pools never delay it."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(settings: SettingsDep, request: Request, response: Response) -> Health:
    checks = {"database": "ok", "broker": "ok"}
    try:
        with get_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    try:
        with request.app.state.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0, timeout=2)
    except Exception as error:
        checks["broker"] = f"unreachable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ready" if ready else "unavailable", checks=checks)
