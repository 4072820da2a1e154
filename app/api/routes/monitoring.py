"""``GET /metrics``: Prometheus text format, computed from the database at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import AuthDep, CeleryDep, SettingsDep
from app.service.collector import render_metrics

router = APIRouter(tags=["operations"], dependencies=[AuthDep])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"description": "missing or invalid API key (only when RECOMB_API_KEYS is set)"},
    },
)
def get_metrics(settings: SettingsDep, celery: CeleryDep) -> Response:
    """Jobs by kind and status, job duration histograms, queue depth, checkpoints and reports.

    Behind the API key like every resource: give Prometheus the key as a
    bearer token (``authorization: {credentials: ...}`` in the scrape config).
    """
    return Response(render_metrics(settings, celery), media_type=CONTENT_TYPE_LATEST)
