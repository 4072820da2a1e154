"""Reports: versioned JSON bodies with a top-level ``passed``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import select

from app.api.deps import AuthDep, PageDep, SessionDep
from app.api.errors import get_or_404
from app.api.schemas import Page, ReportPublic, ReportSummary
from app.service.tables import Report

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[AuthDep])


@router.get("", response_model=Page[ReportSummary])
def list_reports(
    session: SessionDep,
    page: PageDep,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[str | None, Query(max_length=40)] = None,
    passed: bool | None = None,
) -> dict:
    query = select(Report)
    if kind:
        query = query.where(Report.kind == kind)
    if job_id:
        query = query.where(Report.job_id == job_id)
    if passed is not None:
        query = query.where(Report.passed == passed)
    return page.page(session, query, Report)


@router.get("/{report_id}", response_model=ReportPublic)
def get_report(report_id: str, session: SessionDep) -> Report:
    """One report; its body is the model of its job kind (a union on ``kind``), with the ``figures`` it shows."""
    return get_or_404(session, Report, report_id, "report")
