"""Reports: versioned JSON bodies with a top-level ``passed``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import func, select

from app.api.deps import AuthDep, SessionDep
from app.api.errors import not_found, valid_id
from app.models import Report
from app.schemas import MAX_OFFSET, Page, ReportPublic, ReportSummary

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[AuthDep])


@router.get("", response_model=Page[ReportSummary])
def list_reports(
    session: SessionDep,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[str | None, Query(max_length=40)] = None,
    passed: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict:
    query = select(Report)
    if kind:
        query = query.where(Report.kind == kind)
    if job_id:
        query = query.where(Report.job_id == job_id)
    if passed is not None:
        query = query.where(Report.passed == passed)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    items = session.exec(query.order_by(Report.created_at.desc(), Report.id).offset(offset).limit(limit)).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{report_id}", response_model=ReportPublic)
def read_report(report_id: str, session: SessionDep) -> Report:
    row = session.get(Report, report_id) if valid_id(report_id) else None
    if row is None:
        raise not_found("report", report_id)
    return row
