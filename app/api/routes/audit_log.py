"""The audit log: who registered or deleted what (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from app.api.deps import PageDep, SessionDep, require_role
from app.api.schemas import AuditEventPublic, Page
from app.service.tables import AuditEvent

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[require_role("admin")])


@router.get("", response_model=Page[AuditEventPublic])
def list_audit_events(
    session: SessionDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=80, description="only this action, e.g. webhook.delete")] = None,
    target_type: Annotated[str | None, Query(max_length=40, description="only changes to this kind of thing")] = None,
    target_id: Annotated[str | None, Query(max_length=120, description="only changes to this id")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="only changes made by this key fingerprint")] = None,
) -> dict:
    """The audit log, newest first."""
    query = select(AuditEvent)
    for column, value in (
        (AuditEvent.action, action),
        (AuditEvent.target_type, target_type),
        (AuditEvent.target_id, target_id),
        (AuditEvent.actor, actor),
    ):
        if value is not None:
            query = query.where(col(column) == value)
    return page.page(session, query, AuditEvent, newest_by="at")
