"""Live job progress: ``GET /jobs/{id}/events`` as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import AuthDep, ExistingJobId, SettingsDep
from app.api.job_stream import job_event_stream, read_snapshot

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[AuthDep])


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        401: {"description": "missing or invalid API key (only when RECOMB_API_KEYS is set)"},
        404: {"description": "no such job"},
    },
)
async def stream_job_events(job_id: ExistingJobId, settings: SettingsDep) -> AsyncIterator[ServerSentEvent]:
    """A ``job`` event (status, progress, stage, error, report_id, children counts) each time one changes.

    The first event is the current state; the stream ends after a terminal
    status (``succeeded``, ``failed``, ``cancelled``). ``: heartbeat``
    comments keep idle connections open.
    """
    async for event in job_event_stream(partial(read_snapshot, settings, job_id)):
        yield event
